"""Group commit for room logs: a room persists what waited during its last write in one statement.

A message is acknowledged (fanned out, its sender's call returns) only once it is in PostgreSQL.
Writing each message on its own under the room's lock makes a room's throughput one message per
commit round trip: when a commit takes 50 ms (a busy disk, a WAL flush queue), a room takes at most
20 messages a second and, past that, its queue and its latency grow without bound. Here a room
keeps one writer at a time; whatever arrives while a write is in flight goes into the next one,
numbered consecutively and stored by one ``INSERT`` (one WAL flush). Under light load a batch is
one message and nothing changes; under heavy load the batch grows instead of the queue.

Retries with a repeated ``ref`` are answered with the original message, never stored twice; within
one batch the first occurrence is stored and the repeats answered with it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from rooms import repository
from rooms.fanout import Outboxes
from rooms.model import Endpoint, LiveRoom
from rooms.protocol import dumps
from verseflow import logs
from verseflow.errors import DomainError

log = logs.get_logger("rooms.log_writer")


class LogUnavailable(DomainError):
    """The room log could not be written; the client retries with the same ``ref``."""

    status, title = 503, "Room log unavailable"


@dataclass(eq=False)
class Submission:
    """One message waiting for its write; ``done`` resolves once it is persisted and fanned out."""

    endpoint: Endpoint
    sender_id: uuid.UUID
    kind: str
    body: dict[str, Any]
    ref: str | None
    done: asyncio.Future[None]
    answer: str | None = None  # the JSON its sender got back: the stored message, or an earlier original

    @property
    def key(self) -> tuple[uuid.UUID, str] | None:
        return (self.sender_id, self.ref) if self.ref is not None else None


class LogWriter:
    """Persists and fans out the messages of the rooms of one host, a batch per room at a time."""

    def __init__(self, pool: asyncpg.Pool, outboxes: Outboxes, lock: Callable[[uuid.UUID], asyncio.Lock],
                 max_batch: int) -> None:
        self._pool = pool
        self._outboxes = outboxes
        self._lock = lock
        self._max_batch = max_batch

    def submit(self, room: LiveRoom, endpoint: Endpoint, sender_id: uuid.UUID, kind: str, body: dict[str, Any],
               ref: str | None) -> asyncio.Future[None]:
        """Queue a message for the room's next write; await the result to know it is acknowledged."""
        loop = asyncio.get_running_loop()
        submission = Submission(endpoint, sender_id, kind, body, ref, loop.create_future())
        room.pending.append(submission)
        if not room.writing:
            room.writing = True
            loop.create_task(self._drain(room))
        return submission.done

    async def _drain(self, room: LiveRoom) -> None:
        try:
            while room.pending:
                batch = room.pending[:self._max_batch]
                del room.pending[:self._max_batch]
                async with self._lock(room.room_id):  # joins see either none or all of a batch
                    try:
                        await self._write(room, batch)
                    except Exception as exc:  # noqa: BLE001 - every waiting sender learns of it
                        log.warning("room %s: a batch of %d was not written: %r", room.room_id, len(batch), exc)
                        failure = exc if isinstance(exc, DomainError) else LogUnavailable("room log write failed; "
                                                                                         "retry with the same ref")
                        for submission in batch:
                            if not submission.done.done():
                                submission.done.set_exception(failure)
        finally:
            room.writing = False

    async def _write(self, room: LiveRoom, batch: list[Submission]) -> None:
        first: dict[tuple[uuid.UUID, str], Submission] = {}
        unique, repeats = [], []
        for submission in batch:
            key = submission.key
            if key is not None and key in first:
                repeats.append((submission, first[key]))
            else:
                unique.append(submission)
                if key is not None:
                    first[key] = submission
        reloaded = False
        while unique:
            messages = [repository.NewMessage(seq, s.kind, s.sender_id, {**s.body, "seq": seq}, s.ref)
                        for seq, s in enumerate(unique, start=room.seq + 1)]
            try:
                await repository.append_batch(self._pool, room.room_id, messages)
            except repository.RefsTaken:
                unique = await self._answer_repeated_refs(room, unique)
                continue
            except repository.SeqTaken:
                if reloaded:
                    raise
                log.warning("room %s: seq %s taken by another writer, reloading", room.room_id, room.seq + 1)
                room.seq = await repository.last_seq(self._pool, room.room_id)
                reloaded = True
                continue
            for submission, message in zip(unique, messages, strict=True):
                self._publish(room, submission, message)
            break
        for repeat, original in repeats:
            if original.answer is not None:
                self._reply(room, repeat, original.answer)
            elif not repeat.done.done():
                repeat.done.set_exception(LogUnavailable("room log write failed; retry with the same ref"))

    async def _answer_repeated_refs(self, room: LiveRoom, unique: list[Submission]) -> list[Submission]:
        """Answer the submissions whose ref is already stored with the original; return the rest."""
        keys = [s.key for s in unique if s.key is not None]
        stored = await repository.originals(self._pool, room.room_id, keys)
        rest = []
        for submission in unique:
            original = stored.get(submission.key) if submission.key is not None else None
            if original is None:
                rest.append(submission)
            else:
                self._reply(room, submission, dumps(original))
        return rest

    def _publish(self, room: LiveRoom, submission: Submission, message: repository.NewMessage) -> None:
        payload = dumps(message.body)
        room.record(message.seq, payload)
        if message.kind == "transport":
            room.transport = message.body
        submission.answer = payload
        for gateway in room.gateways:
            self._outboxes.put(gateway, ("room", str(room.room_id), payload, message.seq, None))
        submission.done.set_result(None)

    def _reply(self, room: LiveRoom, submission: Submission, payload: str) -> None:
        endpoint = submission.endpoint
        submission.answer = payload
        self._outboxes.put(endpoint.gateway, ("conn", endpoint.conn, payload, 0, str(room.room_id)))
        if not submission.done.done():
            submission.done.set_result(None)
