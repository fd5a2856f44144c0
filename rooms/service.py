"""Room use cases behind the REST API: create, read, invite (set a role), kick.

Authorization lives in :class:`rooms.model.RoomAccess`: only a room's host manages members; a
private room is 404 to anyone without a role in it. Kicking leaves a ``banned`` row (so the user
cannot rejoin a public room) and the caller then disconnects the user's sockets through the host.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from accounts.model import Principal
from rooms import repository
from rooms.model import RoomRole, can_manage_members
from verseflow.db import transaction
from verseflow.errors import Forbidden, InvalidInput, NotFound
from verseflow.events.outbox import emit


async def create_room(pool: asyncpg.Pool, who: Principal, *, name: str, visibility: str) -> dict[str, Any]:
    async with transaction(pool) as conn:
        row = await conn.fetchrow(
            "INSERT INTO rooms (id, owner_id, name, visibility) VALUES ($1, $2, $3, $4) RETURNING *",
            uuid.uuid4(), who.user_id, name, visibility,
        )
        await conn.execute("INSERT INTO room_members (room_id, user_id, role) VALUES ($1, $2, 'host')",
                           row["id"], who.user_id)
        await emit(conn, "room.created", row["id"], room_id=row["id"], owner_id=who.user_id, visibility=visibility)
    return {**dict(row), "role": RoomRole.HOST.value}


async def get_room(pool: asyncpg.Pool, who: Principal, room_id: uuid.UUID) -> dict[str, Any]:
    """The room and the caller's role; 404 for a private room the caller has no role in."""
    access = await repository.load_access(pool, room_id, who.user_id)
    role = access.role_of(who)
    if role is None:
        raise NotFound("room not found")
    row = await pool.fetchrow("SELECT * FROM rooms WHERE id = $1", room_id)
    members = await pool.fetch(
        """SELECT m.user_id, m.role, u.display_name FROM room_members m JOIN users u ON u.id = m.user_id
           WHERE m.room_id = $1 AND m.role <> 'banned' ORDER BY m.created_at""",
        room_id,
    )
    return {**dict(row), "role": role.value, "members": [dict(m) for m in members]}


async def chat_history(pool: asyncpg.Pool, who: Principal, room_id: uuid.UUID, *, before: int | None,
                       limit: int) -> dict[str, Any]:
    """A page of the room's chat, newest last: the ``limit`` messages before seq ``before`` (the latest
    when None). ``older`` is the cursor for the page before this one, None once the first message is in.

    The socket's ``join`` replays what a client missed since a seq it saw; this is for reading back
    further than that, so opening a long-lived room shows its last messages, not its first.
    """
    access = await repository.load_access(pool, room_id, who.user_id)
    if access.role_of(who) is None:
        raise NotFound("room not found")
    page = await repository.chat_before(pool, room_id, before, limit + 1)
    more = len(page) > limit
    items = page[1:] if more else page
    return {"items": items, "older": items[0]["seq"] if more and items else None}


async def set_member_role(pool: asyncpg.Pool, who: Principal, room_id: uuid.UUID, user_id: uuid.UUID,
                          role: RoomRole) -> dict[str, Any]:
    """Invite (or change the role of) a user. Only the host may; the owner's role is fixed."""
    await _authorize_manager(pool, who, room_id, user_id)
    if role in (RoomRole.HOST, RoomRole.BANNED):
        raise InvalidInput("role must be collaborator or listener (kick to ban)")
    async with transaction(pool) as conn:
        if not await conn.fetchval("SELECT true FROM users WHERE id = $1", user_id):
            raise NotFound("user not found")
        await conn.execute(
            """INSERT INTO room_members (room_id, user_id, role, invited_by) VALUES ($1, $2, $3, $4)
               ON CONFLICT (room_id, user_id) DO UPDATE SET role = EXCLUDED.role, invited_by = EXCLUDED.invited_by""",
            room_id, user_id, role.value, who.user_id,
        )
        await emit(conn, "room.member_invited", room_id, room_id=room_id, user_id=user_id, role=role.value)
    return {"room_id": room_id, "user_id": user_id, "role": role.value}


async def kick(pool: asyncpg.Pool, who: Principal, room_id: uuid.UUID, user_id: uuid.UUID) -> None:
    await _authorize_manager(pool, who, room_id, user_id)
    async with transaction(pool) as conn:
        if not await conn.fetchval("SELECT true FROM users WHERE id = $1", user_id):
            raise NotFound("user not found")
        await conn.execute(
            """INSERT INTO room_members (room_id, user_id, role, invited_by) VALUES ($1, $2, 'banned', $3)
               ON CONFLICT (room_id, user_id) DO UPDATE SET role = 'banned', invited_by = EXCLUDED.invited_by""",
            room_id, user_id, who.user_id,
        )
        await emit(conn, "room.member_kicked", room_id, room_id=room_id, user_id=user_id)


async def _authorize_manager(pool: asyncpg.Pool, who: Principal, room_id: uuid.UUID, target: uuid.UUID) -> None:
    access = await repository.load_access(pool, room_id, who.user_id)
    role = access.role_of(who)
    if role is None:
        raise NotFound("room not found")
    if not can_manage_members(role):
        raise Forbidden("only the room's host manages members")
    if target == access.owner_id:
        raise InvalidInput("the room's owner is always its host")
