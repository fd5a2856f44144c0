"""PostgreSQL access for rooms: rows, roles and the sequenced room log.

The log stores each message's exact JSON as sent, so a replay after any crash is byte-for-byte
what live members saw. ``(room_id, seq)`` is the primary key: two writers that both believed they
owned a room (a host and its zombie predecessor) cannot both persist the same number.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
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


async def load_accesses(pool: asyncpg.Pool, keys: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> list[RoomAccess | None]:
    """:func:`load_access` for many (room, user) pairs in one query; None where the room does not exist."""
    rows = await pool.fetch(
        """SELECT k.i, r.id, r.owner_id, r.visibility, m.role
           FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS k(room_id, user_id, i)
           JOIN rooms r ON r.id = k.room_id
           LEFT JOIN room_members m ON m.room_id = k.room_id AND m.user_id = k.user_id""",
        [k[0] for k in keys], [k[1] for k in keys],
    )
    found: list[RoomAccess | None] = [None] * len(keys)
    for row in rows:
        found[row["i"] - 1] = RoomAccess(room_id=row["id"], owner_id=row["owner_id"], visibility=row["visibility"],
                                         explicit_role=RoomRole(row["role"]) if row["role"] else None)
    return found


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


async def chat_before(pool: asyncpg.Pool, room_id: uuid.UUID, before: int | None,
                      limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` chat messages with ``seq < before`` (all of them when ``before`` is None),
    oldest first: a room opens on its latest chat and pages back from the first seq it shows."""
    rows = await pool.fetch(
        """SELECT body FROM room_messages WHERE room_id = $1 AND kind = 'chat' AND seq < $2
           ORDER BY seq DESC LIMIT $3""",
        room_id, before if before is not None else 2**63 - 1, limit,
    )
    return [r["body"] for r in reversed(rows)]


async def latest_transport(pool: asyncpg.Pool, room_id: uuid.UUID) -> dict[str, Any] | None:
    return await pool.fetchval(
        "SELECT body FROM room_messages WHERE room_id = $1 AND kind = 'transport' ORDER BY seq DESC LIMIT 1", room_id
    )


@dataclass(frozen=True)
class NewMessage:
    """A message about to be persisted with the sequence number the room assigned it."""

    seq: int
    kind: str
    sender_id: uuid.UUID
    body: dict[str, Any]
    client_ref: str | None


class RefsTaken(Exception):
    """Some messages repeat a ``client_ref`` the log already holds: nothing of the batch was stored."""


_APPEND_BATCH = """
WITH incoming AS (
    SELECT * FROM unnest($2::bigint[], $3::text[], $4::uuid[], $5::jsonb[], $6::text[])
        AS t(seq, kind, sender_id, body, client_ref)
), taken AS (
    SELECT 1 FROM incoming i JOIN room_messages m
      ON m.room_id = $1 AND m.sender_id = i.sender_id AND m.client_ref = i.client_ref
    LIMIT 1
)
INSERT INTO room_messages (room_id, seq, kind, sender_id, body, client_ref)
SELECT $1, seq, kind, sender_id, body, client_ref FROM incoming WHERE NOT EXISTS (SELECT 1 FROM taken)
RETURNING seq
"""


async def append_batch(pool: asyncpg.Pool, room_id: uuid.UUID, messages: Sequence[NewMessage]) -> None:
    """Persist a batch in one statement, hence one commit (one WAL flush for all of them).

    All or nothing: if any message repeats a ``client_ref`` already in the log, nothing is stored
    (:class:`RefsTaken`), so the caller can answer those with the originals and renumber the rest
    without leaving a gap. A sequence number stored by another writer raises :class:`SeqTaken`.
    """
    try:
        stored = await pool.fetch(
            _APPEND_BATCH, room_id, [m.seq for m in messages], [m.kind for m in messages],
            [m.sender_id for m in messages], [m.body for m in messages], [m.client_ref for m in messages],
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "room_messages_client_ref":  # a concurrent writer stored the same ref
            raise RefsTaken(str(exc)) from exc
        raise SeqTaken(str(exc)) from exc
    if len(stored) != len(messages):
        raise RefsTaken(f"{len(messages) - len(stored)} of {len(messages)} messages repeat a stored client_ref")


async def originals(pool: asyncpg.Pool, room_id: uuid.UUID,
                    keys: Sequence[tuple[uuid.UUID, str]]) -> dict[tuple[uuid.UUID, str], dict[str, Any]]:
    """The stored bodies of earlier messages with these (sender, client_ref) keys."""
    rows = await pool.fetch(
        """SELECT m.sender_id, m.client_ref, m.body
           FROM unnest($2::uuid[], $3::text[]) AS k(sender_id, client_ref)
           JOIN room_messages m ON m.room_id = $1 AND m.sender_id = k.sender_id AND m.client_ref = k.client_ref""",
        room_id, [k[0] for k in keys], [k[1] for k in keys],
    )
    return {(r["sender_id"], r["client_ref"]): r["body"] for r in rows}