"""Persistence of room documents (rooms.yjs) as an append-only log of Yjs updates in PostgreSQL.

Why a log and not a document column: appending one small update per edit is cheap and never
rewrites what other edits wrote, and Yjs updates replay to the same document in any order. The
log only grows, so the room's host squashes it now and then (``append_update`` returns the row
count to decide when): ``compact`` replaces the rows a snapshot covers with that one snapshot.

Ordering choice: the snapshot row takes over the id of the last row it replaces. Ids below it are
gone, ids above it (appends that raced the snapshot) are untouched, so a plain ``ORDER BY id``
replays the snapshot first and everything newer after it. Yjs would converge in any order (an
update whose predecessors are missing waits until they arrive), but causal order replays faster.
"""

from __future__ import annotations

import uuid

import asyncpg

from verseflow.db import transaction


async def load_log(pool: asyncpg.Pool, room_id: uuid.UUID) -> list[tuple[int, bytes]]:
    """The room's (id, update) rows in id order; the last id is what a snapshot of them covers."""
    rows = await pool.fetch("SELECT id, update FROM room_doc_updates WHERE room_id = $1 ORDER BY id", room_id)
    return [(row["id"], row["update"]) for row in rows]


async def load_updates(pool: asyncpg.Pool, room_id: uuid.UUID) -> list[bytes]:
    """The room's updates in replay order (a snapshot first, if compacted)."""
    return [update for _, update in await load_log(pool, room_id)]


async def append_update(pool: asyncpg.Pool, room_id: uuid.UUID, update: bytes) -> int:
    """Store one update; returns how many rows the room's log now has, so the caller knows when to compact."""
    return await pool.fetchval(
        """WITH added AS (INSERT INTO room_doc_updates (room_id, update) VALUES ($1, $2) RETURNING id)
           SELECT (SELECT count(*) FROM added) + count(*) FROM room_doc_updates WHERE room_id = $1""",
        room_id,
        update,
    )


async def compact(pool: asyncpg.Pool, room_id: uuid.UUID, snapshot: bytes, through_id: int | None = None) -> int:
    """Replace the rows with id <= `through_id` by `snapshot`, in one transaction; returns how many went.

    `through_id` is the last row the snapshot includes (from ``load_log``). Without it, every row
    committed when this runs is replaced: right only if nothing was appended for the room between
    taking the snapshot and this call, as when the room's single host does both between two frames.
    Rows appended after the snapshot survive either way.
    """
    async with transaction(pool) as conn:
        # Two compactions of one room take turns. NO KEY UPDATE does not block the KEY SHARE lock an
        # append's foreign key check takes, so appends go on meanwhile.
        await conn.execute("SELECT 1 FROM rooms WHERE id = $1 FOR NO KEY UPDATE", room_id)
        last = await conn.fetchval(
            "SELECT max(id) FROM room_doc_updates WHERE room_id = $1 AND ($2::bigint IS NULL OR id <= $2)",
            room_id,
            through_id,
        )
        if last is None:
            return 0
        status = await conn.execute("DELETE FROM room_doc_updates WHERE room_id = $1 AND id <= $2", room_id, last)
        await conn.execute(
            "INSERT INTO room_doc_updates (id, room_id, update) VALUES ($1, $2, $3)", last, room_id, snapshot
        )
        return int(status.split()[-1])
