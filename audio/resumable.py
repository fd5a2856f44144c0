"""Resumable uploads: the use cases behind tus 1.0 at ``/v1/uploads`` (create, append, finish, end, expire).

An upload is announced with its length and its track's fields (checked then: size limit, artist and
album ownership, before any byte arrives), then filled by appends at the offset the server holds.

Storage. Each append is stored as its own piece, ``resumable/<upload>/<offset>-<token>``, with the
object store's ordinary atomic ``put_stream``; the last byte joins the pieces into the track's source
(``compose``). Pieces rather than one growing file because the same code must be right on both
backends: S3 cannot append, and a local file appended on one node is out of reach of the replica on
another node that receives the next append. A piece is durable (fsynced, or in the bucket) before the
offset that counts it is committed, so an offset a client was told survives any crash; what a crash
leaves behind is a piece no row names, removed with its upload. A request cut mid-body still stores
what arrived (the route ends the body stream early; tus says the server SHOULD keep it).

Concurrency. One append at a time holds an upload through a lease (see verseflow/sql/0008): taken
with the offset check in one ``UPDATE``, renewed while bytes flow, released by the commit. Every
write under it names its token, so an append that lost its lease (it stalled) changes nothing.

Completion runs the same use case as a multipart upload (``service.accept_upload``: the decode check,
the track, its job row and ``track.uploaded``), with the upload marked complete in that transaction.
Audio that fails the check ends the upload and removes its bytes. Expired uploads are swept
(``sweep_expired``, run periodically by the event worker) with their bytes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from accounts.model import Principal
from audio import resumable_repository as repo
from audio import service
from audio.decode import AudioInfo, AudioRejected
from verseflow.db import transaction
from verseflow.errors import Conflict, DomainError, Gone, Locked, NotFound, PayloadTooLarge, RateLimited
from verseflow.settings import Settings
from verseflow.storage import ObjectStore, StoredObject

SWEEP_BATCH = 100


@dataclass(frozen=True)
class ResumableUpload:
    id: uuid.UUID
    track_id: uuid.UUID
    length: int
    offset: int
    fields: service.UploadFields
    raw_metadata: str
    expires_at: datetime
    completed: bool

    @property
    def remaining(self) -> int:
        return self.length - self.offset


@dataclass(frozen=True)
class Appended:
    """The upload after an append; ``source`` is set when this append finished it (the track exists)."""

    upload: ResumableUpload
    source: AudioInfo | None = None
    stored: StoredObject | None = None


class LeaseLost(Conflict):
    """Another request took the upload over (this one stalled past the lease, or the upload was ended)."""


def parts_prefix(upload_id: uuid.UUID) -> str:
    return f"resumable/{upload_id}"


async def create(pool: asyncpg.Pool, settings: Settings, who: Principal, *, length: int,
                 fields: service.UploadFields, raw_metadata: str = "",
                 file: dict[str, str] | None = None) -> ResumableUpload:
    """Announce an upload of ``length`` bytes for a track with ``fields``; nothing is stored yet."""
    if length > settings.upload_max_bytes:
        raise PayloadTooLarge(f"the upload is {length} bytes; the limit is {settings.upload_max_bytes}")
    if length == 0:
        raise AudioRejected("empty", "the upload is empty")
    metadata = {"title": fields.title, "artist_id": str(fields.artist_id),
                "album_id": str(fields.album_id) if fields.album_id else None, "genre": fields.genre,
                **(file or {})}
    async with transaction(pool) as conn:
        await service.require_uploader(conn, who, fields.artist_id, fields.album_id)
        # One user's creations queue here, so that the quota below is counted exactly.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 8))", who.user_id)
        if await repo.count_open(conn, who.user_id) >= settings.resumable_max_open:
            raise RateLimited(f"{settings.resumable_max_open} unfinished uploads already; finish or delete one",
                              retry_after=60)
        row = await repo.insert(conn, upload_id=uuid.uuid4(), owner_id=who.user_id, track_id=uuid.uuid4(),
                                length=length, metadata=metadata, raw_metadata=raw_metadata,
                                expiry_s=settings.resumable_expiry_s)
    return _upload(row)


async def status(pool: asyncpg.Pool, who: Principal, upload_id: uuid.UUID) -> ResumableUpload:
    """The caller's upload as the server holds it (404 for anyone else's, 410 once expired)."""
    row = await repo.fetch(pool, upload_id)
    if row is None or row["owner_id"] != who.user_id:
        raise NotFound("upload not found")
    if row["completed_at"] is None and row["expires_at"] <= row["now"]:
        raise Gone("the upload expired")
    return _upload(row)


async def append(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, who: Principal,
                 upload_id: uuid.UUID, *, offset: int, body: AsyncIterable[bytes], declared: int | None = None,
                 on_complete: Callable[[uuid.UUID], Awaitable[None]] | None = None) -> Appended:
    """Store ``body`` at ``offset``; the byte that completes the upload makes its track.

    What ``body`` yields before it ends is kept, even when the request is cut short: the caller ends
    the stream early on a disconnect, and a cancelled request (Serve's proxy cancels the replica's
    call when its client leaves) ends it here. Once the body has ended, recording it (and, for the
    last byte, making the track and calling ``on_complete`` with its id to start processing) runs to
    the end even if the caller is cancelled; a cancellation is raised again afterwards. ``declared``
    (the request's Content-Length) lets a body longer than what the upload lacks be refused unread.
    """
    token = uuid.uuid4()
    row = await repo.acquire(pool, upload_id, who.user_id, offset, token, settings.resumable_lease_s)
    if row is None:
        await _refuse(pool, who, upload_id, offset)
    upload = _upload(row)
    if declared is not None and declared > upload.remaining:
        await repo.release(pool, upload_id, token)
        raise PayloadTooLarge(f"{declared} bytes sent; the upload lacks {upload.remaining}")
    key = f"{parts_prefix(upload_id)}/{offset:015d}-{token.hex[:12]}"
    received = _Body(body, lambda: repo.renew(pool, upload_id, token, settings.resumable_lease_s),
                     every_s=settings.resumable_lease_s / 3)
    try:
        stored = await store.put_stream(key, received, max_bytes=upload.remaining)
    except BaseException as exc:
        await asyncio.shield(repo.release(pool, upload_id, token))
        if not isinstance(exc, DomainError) and await repo.fetch(pool, upload_id) is None:
            raise NotFound("the upload was ended while receiving") from exc
        raise
    appended = await asyncio.shield(_record(pool, store, settings, who, upload, token, stored, on_complete))
    if received.cancelled:
        raise asyncio.CancelledError("the request was cancelled; what arrived is stored")
    return appended


async def terminate(pool: asyncpg.Pool, store: ObjectStore, who: Principal, upload_id: uuid.UUID) -> None:
    """End the caller's upload and remove its bytes (an append in flight then fails; a track stays)."""
    row = await repo.delete(pool, upload_id, owner_id=who.user_id)
    if row is None:
        raise NotFound("upload not found")
    await asyncio.to_thread(_remove_bytes, store, row)


async def sweep_expired(pool: asyncpg.Pool, store: ObjectStore, *, now: datetime | None = None,
                        batch: int = SWEEP_BATCH) -> int:
    """Remove expired uploads and their bytes, ``batch`` at a time; returns how many went.

    Rows are locked while their bytes go, and deleted in the same transaction: a crash in between
    leaves them for the next sweep (removing bytes twice is harmless). Uploads an append holds are
    left alone. ``now`` (default: the database's clock) lets a test sweep as if later."""
    swept = 0
    while True:
        async with transaction(pool) as conn:
            rows = await repo.lock_expired(conn, now, batch)
            for row in rows:
                await asyncio.to_thread(_remove_bytes, store, row)
            await repo.delete_many(conn, [row["id"] for row in rows])
        swept += len(rows)
        if len(rows) < batch:
            return swept


async def _record(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, who: Principal,
                  upload: ResumableUpload, token: uuid.UUID, stored: StoredObject,
                  on_complete: Callable[[uuid.UUID], Awaitable[None]] | None) -> Appended:
    """Count a stored piece: move the offset past it, or finish the upload with it."""
    if stored.size == 0:
        await asyncio.to_thread(store.delete, stored.key)
        await repo.release(pool, upload.id, token)
        return Appended(upload)
    if stored.size < upload.remaining:
        async with transaction(pool) as conn:
            row = await repo.add_part(conn, upload.id, token, start=upload.offset, size=stored.size, key=stored.key,
                                      expiry_s=settings.resumable_expiry_s)
        if row is None:
            await asyncio.to_thread(store.delete, stored.key)
            raise LeaseLost("the upload was taken over by another request; ask for its offset again")
        return Appended(_upload(row), stored=stored)
    info = await _complete(pool, store, settings, who, upload, token, stored.key)
    if on_complete is not None:
        await on_complete(upload.track_id)
    return Appended(await status(pool, who, upload.id), source=info, stored=stored)


async def _complete(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, who: Principal,
                    upload: ResumableUpload, token: uuid.UUID, last_key: str) -> AudioInfo:
    """Join the pieces into the track's source and accept it like a multipart upload."""
    if not await repo.renew(pool, upload.id, token, settings.resumable_lease_s):  # the join and check run under it
        await asyncio.to_thread(store.delete, last_key)
        raise LeaseLost("the upload was taken over by another request; ask for its offset again")
    pieces = await repo.part_keys(pool, upload.id)
    if sum(p["size"] for p in pieces) != upload.offset:
        raise RuntimeError(f"resumable upload {upload.id}: stored pieces do not add up to its offset")
    source = await asyncio.to_thread(store.compose, service.source_key(upload.track_id),
                                     [p["key"] for p in pieces] + [last_key])

    async def mark_complete(conn: asyncpg.Connection) -> None:
        if not await repo.finish(conn, upload.id, token, start=upload.offset, expiry_s=settings.resumable_expiry_s):
            raise LeaseLost("the upload was taken over by another request; ask for its offset again")

    try:
        info = await service.accept_upload(pool, store, settings, who, upload.track_id, upload.fields, source,
                                           within=mark_complete)
    except LeaseLost:
        await asyncio.to_thread(store.delete, last_key)  # the source may be the other request's: left
        raise
    except DomainError:
        # The bytes and the fields are final, so this upload can never succeed: end it.
        if (row := await repo.delete(pool, upload.id, token=token)) is not None:
            await asyncio.to_thread(_remove_bytes, store, row)
        raise
    except BaseException:
        await asyncio.shield(repo.release(pool, upload.id, token))  # the client may send the last piece again
        raise
    await asyncio.to_thread(store.delete_prefix, parts_prefix(upload.id))
    return info


async def _refuse(pool: asyncpg.Pool, who: Principal, upload_id: uuid.UUID, offset: int) -> None:
    """Say why the lease could not be taken."""
    upload = await status(pool, who, upload_id)
    if upload.completed:
        raise Conflict("the upload is already complete", upload_offset=upload.offset)
    if upload.offset != offset:
        raise Conflict(f"the upload is at offset {upload.offset}, not {offset}", upload_offset=upload.offset)
    raise Locked("another request is sending to this upload; retry shortly")


class _Body:
    """The request body as the store reads it: the lease is renewed every ``every_s`` while bytes flow,
    and a cancellation of the request ends the body (``cancelled``) instead of discarding it."""

    def __init__(self, chunks: AsyncIterable[bytes], renew: Callable[[], Awaitable[bool]], *,
                 every_s: float) -> None:
        self._chunks = chunks
        self._renew = renew
        self._every_s = every_s
        self.cancelled = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        source = aiter(self._chunks)
        renewed = time.monotonic()
        while True:
            try:
                chunk = await anext(source)
                if time.monotonic() - renewed > self._every_s:
                    if not await asyncio.shield(self._renew()):
                        raise LeaseLost("the upload was taken over by another request; ask for its offset again")
                    renewed = time.monotonic()
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if (task := asyncio.current_task()) is not None:
                    task.uncancel()
                self.cancelled = True
                return
            yield chunk


def _remove_bytes(store: ObjectStore, row: Any) -> None:  # noqa: ANN401 - an asyncpg record
    """An ended upload's pieces, and its assembled source unless that became a track's."""
    store.delete_prefix(parts_prefix(row["id"]))
    if row["completed_at"] is None:
        store.delete_prefix(service.source_prefix(row["track_id"]))


def _upload(row: Any) -> ResumableUpload:  # noqa: ANN401 - an asyncpg record
    meta = row["metadata"]
    fields = service.UploadFields(title=meta["title"], artist_id=uuid.UUID(meta["artist_id"]),
                                  album_id=uuid.UUID(meta["album_id"]) if meta.get("album_id") else None,
                                  genre=meta.get("genre"))
    return ResumableUpload(id=row["id"], track_id=row["track_id"], length=row["upload_length"],
                           offset=row["upload_offset"], fields=fields, raw_metadata=row["raw_metadata"],
                           expires_at=row["expires_at"], completed=row["completed_at"] is not None)
