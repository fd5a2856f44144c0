"""PostgreSQL access for rooms: rows, roles and the sequenced room log.

The log stores each message's exact JSON as sent, so a replay after any crash is byte-for-byte
what live members saw. ``(room_id, seq)`` is the primary key: two writers that both believed they
owned a room (a host and its zombie predecessor) cannot both persist the same number.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from rooms.model import RoomAccess, RoomRole
from verseflow.errors import NotFound


class SeqTaken(Exception):
    """Another writer persisted this sequence number first: reload the room and retry."""


async def load_access(pool_or_conn: asyncpg.Pool | asyncpg.Connection, room_id: uuid.UUID,
                      user_id: uuid.UUID | None) -> RoomAccess:
    row = await pool_or_conn.fetchrow(
        """SELECT r.id, r.owner_id, r.visibility, m.role
           FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = $2
           WHERE r.id = $1""",
        room_id, user_id,
    )
    if row is None:
        raise NotFound("room not found")
    return RoomAccess(room_id=row["id"], owner_id=row["owner_id"], visibility=row["visibility"],
                      explicit_role=RoomRole(row["role"]) if row["role"] else None)


async def last_seq(pool: asyncpg.Pool, room_id: uuid.UUID) -> int:
    return await pool.fetchval("SELECT coalesce(max(seq), 0) FROM room_messages WHERE room_id = $1", room_id)


async def recent(pool: asyncpg.Pool, room_id: uuid.UUID, limit: int) -> list[tuple[int, str]]:
    rows = await pool.fetch(
        "SELECT seq, body FROM room_messages WHERE room_id = $1 ORDER BY seq DESC LIMIT $2", room_id, limit
    )
    return [(r["seq"], json.dumps(r["body"], separators=(",", ":"))) for r in reversed(rows)]


async def since(pool: asyncpg.Pool, room_id: uuid.UUID, after: int, limit: int) -> list[tuple[int, str]]:
    rows = await pool.fetch(
        "SELECT seq, body FROM room_messages WHERE room_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        room_id, after, limit,
    )
    return [(r["seq"], json.dumps(r["body"], separators=(",", ":"))) for r in rows]


async def latest_transport(pool: asyncpg.Pool, room_id: uuid.UUID) -> dict[str, Any] | None:
    return await pool.fetchval(
        "SELECT body FROM room_messages WHERE room_id = $1 AND kind = 'transport' ORDER BY seq DESC LIMIT 1", room_id
    )


async def append(pool: asyncpg.Pool, room_id: uuid.UUID, seq: int, kind: str, sender_id: uuid.UUID,
                 body: dict[str, Any], client_ref: str | None) -> dict[str, Any] | None:
    """Persist one message. Returns None when stored; the earlier message when ``client_ref`` repeats."""
    try:
        stored = await pool.fetchval(
            """INSERT INTO room_messages (room_id, seq, kind, sender_id, body, client_ref)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (room_id, sender_id, client_ref) WHERE client_ref IS NOT NULL DO NOTHING
               RETURNING seq""",
            room_id, seq, kind, sender_id, body, client_ref,
        )
    except asyncpg.UniqueViolationError as exc:
        raise SeqTaken(str(exc)) from exc
    if stored is not None:
        return None
    return await pool.fetchval(
        "SELECT body FROM room_messages WHERE room_id = $1 AND sender_id = $2 AND client_ref = $3",
        room_id, sender_id, client_ref,
    )
