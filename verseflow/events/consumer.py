"""Consumer groups on the event stream: at-least-once delivery, effectively-once effects.

A ``Consumer`` reads the stream as one member of a Redis consumer group, so the members of a group
share the work and every group sees every event. Each event runs its handlers inside one PostgreSQL
transaction that also records ``(group, event id)`` in ``processed_events``; the entry is
acknowledged (XACK) only after that transaction committed. A redelivery (a relay publishing twice,
a consumer dying between commit and XACK) finds the row and is acknowledged without running the
handlers again. The group name is the idempotency key, so it must stay stable across deployments.

A handler that fails leaves its entry pending. Entries pending longer than
``consumer_reclaim_idle_ms`` (the consumer crashed, or the handler failed) are taken over with
XAUTOCLAIM by whichever member passes next and retried; one delivered more than
``consumer_max_deliveries`` times, or one that cannot be read at all, is moved to the dead-letter
stream and acknowledged, so a poison message never blocks its group. So is a reclaimed entry older
than the deduplication window (``processed_events_retention_s``, see ``retention.py``): it may have
been handled, and its record pruned, so running it again could repeat its effects.

Handlers are plain functions ``async def handler(conn, event) -> None`` registered by event type;
their other dependencies are bound by name (``functools.partial``) where the consumer is composed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from verseflow import logs
from verseflow.db import transaction
from verseflow.events import lag
from verseflow.events.loops import TRANSIENT_ERRORS, wait_any
from verseflow.events.outbox import Event
from verseflow.events.relay import stream_key
from verseflow.events.retention import dedup_horizon_ms
from verseflow.redis_client import key
from verseflow.settings import Settings

log = logs.get_logger("events.consumer")

Handler = Callable[[asyncpg.Connection, Event], Awaitable[None]]
Handlers = Mapping[str, Sequence[Handler]]


def _entry_ms(entry_id: str) -> int:
    """When Redis added the entry (ids are ``<unix ms>-<seq>``)."""
    return int(entry_id.split("-", 1)[0])


def dead_letter_key(settings: Settings) -> str:
    """The stream holding entries no group could handle, with the group and the reason added."""
    return key(settings, "stream", settings.events_stream, "dead")


class Consumer:
    """One member of consumer group ``group``; run as many members (processes, nodes) as the load needs."""

    def __init__(
        self, pool: asyncpg.Pool, redis: Redis, settings: Settings, *, group: str, handlers: Handlers,
        name: str | None = None, batch_size: int = 100,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.settings = settings
        self.group = group
        self.handlers = handlers
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.batch_size = batch_size
        self.stream = stream_key(settings)
        self.dead_letters = dead_letter_key(settings)
        self._group_ready = False
        self._reclaim_from = "0-0"

    async def process_once(self) -> int:
        """Reclaim stale pending entries, then read new ones (blocking up to ``consumer_block_ms``).

        Returns how many entries this pass acknowledged (handled, skipped as duplicates or dead-lettered).
        """
        if not self._group_ready:
            await self._create_group()
        try:
            return await self._reclaim() + await self._read_new()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("stream or group %s vanished (Redis restarted empty?); recreating it", self.group)
            self._group_ready = False
            return 0

    async def run(self, stop_event: asyncio.Event) -> None:
        """Process until ``stop_event`` is set, riding out PostgreSQL and Redis outages."""
        while not stop_event.is_set():
            try:
                await self.process_once()
            except TRANSIENT_ERRORS as exc:
                log.warning("consumer %s/%s pass failed, retrying: %r", self.group, self.name, exc)
                await wait_any(stop_event, seconds=self.settings.consumer_block_ms / 1000)

    async def _create_group(self) -> None:
        try:
            # From the stream's start: events published before the group existed are handled too.
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _read_new(self) -> int:
        response = await self.redis.xreadgroup(
            self.group, self.name, {self.stream: ">"}, count=self.batch_size,
            block=self.settings.consumer_block_ms,
        )
        acknowledged = 0
        for _stream, entries in response or []:
            for entry_id, fields in entries:
                acknowledged += await self._handle(entry_id, fields)
        return acknowledged

    async def _reclaim(self) -> int:
        self._reclaim_from, claimed, *_ = await self.redis.xautoclaim(
            self.stream, self.group, self.name, min_idle_time=self.settings.consumer_reclaim_idle_ms,
            start_id=self._reclaim_from, count=self.batch_size,
        )
        if not claimed:
            return 0
        deliveries = await self._deliveries([entry_id for entry_id, _ in claimed])
        acknowledged = 0
        horizon_ms = dedup_horizon_ms(self.settings, time.time())
        for entry_id, fields in claimed:
            delivered = deliveries[entry_id]
            if delivered > self.settings.consumer_max_deliveries:
                acknowledged += await self._dead_letter(entry_id, fields, f"delivered {delivered} times")
            elif _entry_ms(entry_id) < horizon_ms:
                acknowledged += await self._dead_letter(
                    entry_id, fields or {}, "reclaimed after the deduplication window: it may have been handled")
            else:
                acknowledged += await self._handle(entry_id, fields)
        return acknowledged

    async def _deliveries(self, entry_ids: list[str]) -> dict[str, int]:
        """How often each entry was delivered (XAUTOCLAIM counts its own claim as a delivery)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
            results = await pipe.execute()
        return {
            entry_id: rows[0]["times_delivered"] if rows else 0  # none: acknowledged meanwhile
            for entry_id, rows in zip(entry_ids, results, strict=True)
        }

    async def _handle(self, entry_id: str, fields: dict[str, str] | None) -> int:
        """Run the handlers and acknowledge; 0 when they failed (the entry stays pending for a retry)."""
        try:
            event = Event.from_fields(fields or {})
        except (KeyError, ValueError, TypeError) as exc:
            return await self._dead_letter(entry_id, fields or {}, f"unreadable entry: {exc!r}")
        handlers = self.handlers.get(event.type, ())
        outcome = "skipped"
        if handlers:
            token = logs.request_id_var.set(f"event:{event.id}")
            try:
                outcome = "handled" if await self._apply(event, handlers) else "duplicate"
            except Exception:
                log.exception("group %s failed on %s %s; it stays pending for a retry",
                              self.group, event.type, event.id)
                lag.HANDLED.inc(group=self.group, outcome="failed")
                return 0
            finally:
                logs.request_id_var.reset(token)
        await self.redis.xack(self.stream, self.group, entry_id)
        lag.HANDLED.inc(group=self.group, outcome=outcome)
        lag.HANDLING_LAG.observe(max(0.0, time.time() - _entry_ms(entry_id) / 1000), group=self.group)
        return 1

    async def _apply(self, event: Event, handlers: Sequence[Handler]) -> bool:
        """Run the handlers in one transaction; False when the group had handled the event already."""
        async with transaction(self.pool) as conn:
            first_time = await conn.fetchval(
                """INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING RETURNING true""",
                self.group, event.id,
            )
            if not first_time:
                log.info("group %s already handled %s %s; skipping the redelivery",
                         self.group, event.type, event.id)
                return False
            for handler in handlers:
                await handler(conn, event)
        return True

    async def _dead_letter(self, entry_id: str, fields: dict[str, str], reason: str) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:  # MULTI: moved and acknowledged together
            pipe.xadd(
                self.dead_letters,
                {**fields, "dead_letter_entry": entry_id, "dead_letter_group": self.group,
                 "dead_letter_reason": reason},
                maxlen=self.settings.events_stream_maxlen, approximate=True,
            )
            pipe.xack(self.stream, self.group, entry_id)
            await pipe.execute()
        log.error("group %s moved entry %s to the dead letters: %s", self.group, entry_id, reason)
        lag.HANDLED.inc(group=self.group, outcome="dead_lettered")
        return 1
