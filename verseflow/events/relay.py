"""The outbox relay: moves committed outbox rows to the Redis event stream.

Services write events into ``outbox`` in the same transaction as their change (``outbox.emit``);
the relay is the only thing that talks to Redis on their behalf. One pass locks a batch of
unpublished rows (``FOR UPDATE SKIP LOCKED``, so several relays share the work without waiting on
each other), appends them to the stream in ``seq`` order and marks them published in the same
transaction, after XADD succeeded. A crash between the XADD and the commit publishes those rows
again on the next pass: delivery is at-least-once and consumers are idempotent. Rolled-back
transactions never reach the table, so they are never published.

The loop wakes on PostgreSQL ``NOTIFY outbox`` (a trigger fires on every insert) and also polls, so
a missed notification (listener reconnecting, database restart) only delays publication.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from redis.asyncio import Redis

from verseflow import logs
from verseflow.db import transaction
from verseflow.events import lag
from verseflow.events.loops import TRANSIENT_ERRORS, wait_any
from verseflow.events.outbox import Event
from verseflow.redis_client import key
from verseflow.settings import Settings

log = logs.get_logger("events.relay")

NOTIFY_CHANNEL = "outbox"


def stream_key(settings: Settings) -> str:
    """The Redis key of the event stream every relay writes and every consumer group reads."""
    return key(settings, "stream", settings.events_stream)


class OutboxRelay:
    """Publishes unpublished outbox rows; run one or several per deployment."""

    def __init__(self, pool: asyncpg.Pool, redis: Redis, settings: Settings) -> None:
        self.pool = pool
        self.redis = redis
        self.settings = settings
        self.stream = stream_key(settings)

    async def publish_pending(self) -> int:
        """Publish every row committed so far, batch by batch; returns how many were published."""
        total = 0
        while True:
            published = await self._publish_batch()
            total += published
            if published < self.settings.relay_batch_size:
                return total

    async def _publish_batch(self) -> int:
        async with transaction(self.pool) as conn:
            rows = await conn.fetch(
                """SELECT id, type, aggregate_id, payload, created_at FROM outbox
                   WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED""",
                self.settings.relay_batch_size,
            )
            if not rows:
                return 0
            async with self.redis.pipeline(transaction=False) as pipe:
                for row in rows:
                    event = Event(type=row["type"], payload=row["payload"], aggregate_id=row["aggregate_id"],
                                  id=row["id"], occurred_at=row["created_at"])
                    pipe.xadd(self.stream, event.to_fields(), maxlen=self.settings.events_stream_maxlen,
                              approximate=True)
                await pipe.execute()
            await conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY($1::uuid[])",
                               [row["id"] for row in rows])
        now = datetime.now(UTC)
        for row in rows:
            lag.PUBLISH_LAG.observe(max(0.0, (now - row["created_at"]).total_seconds()))
        lag.PUBLISHED.inc(len(rows))
        return len(rows)

    async def run(self, stop_event: asyncio.Event) -> None:
        """Publish on every notification and every poll interval until ``stop_event`` is set."""
        wake = asyncio.Event()
        listener: asyncpg.Connection | None = None
        try:
            while not stop_event.is_set():
                wake.clear()  # before the pass: an insert committed during it wakes the next one
                if listener is None or listener.is_closed():
                    listener = await self._listen(wake)
                try:
                    await self.publish_pending()
                except TRANSIENT_ERRORS as exc:
                    log.warning("outbox relay pass failed, retrying: %r", exc)
                await wait_any(stop_event, wake, seconds=self.settings.relay_poll_interval_s)
        finally:
            if listener is not None and not listener.is_closed():
                await listener.close()

    async def _listen(self, wake: asyncio.Event) -> asyncpg.Connection | None:
        """A dedicated connection listening on the channel, or None (polling only) until it can be opened.

        Not a pooled connection: the pool resets connections on release, and this one is held for good.
        """
        database_url, _ = self.settings.require_urls()
        listener: asyncpg.Connection | None = None
        try:
            listener = await asyncpg.connect(database_url)
            await listener.add_listener(NOTIFY_CHANNEL, lambda *_: wake.set())
        except TRANSIENT_ERRORS as exc:
            if listener is not None:
                listener.terminate()
            log.warning("cannot listen for outbox notifications, polling only: %r", exc)
            return None
        return listener
