"""Playlists: ordered entries, public or private, collaborators and followers.

Every entry change locks the playlist row first, so concurrent edits serialize and positions stay
dense (0..n-1). A private playlist is invisible (404) to anyone who may not read it; a readable
playlist that the caller may not change answers 403.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from accounts.model import Principal
from catalog.model import PlaylistAccess, insertion_position, move_target
from verseflow.db import transaction, update_row
from verseflow.errors import Conflict, Forbidden, InvalidInput, NotFound
from verseflow.events.outbox import emit


async def create_playlist(
    pool: asyncpg.Pool, who: Principal, *, name: str, public: bool = False, description: str = ""
) -> dict[str, Any]:
    async with transaction(pool) as conn:
        row = await conn.fetchrow(
            "INSERT INTO playlists (id, owner_id, name, public, description) VALUES ($1, $2, $3, $4, $5) RETURNING *",
            uuid.uuid4(), who.user_id, name, public, description,
        )
        await emit(conn, "playlist.created", row["id"], playlist_id=row["id"], owner_id=who.user_id, public=public)
    return {**dict(row), "tracks": [], "collaborators": [], "followers": 0}


async def get_playlist(pool: asyncpg.Pool, who: Principal | None, playlist_id: uuid.UUID) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row, access = await _load(conn, playlist_id)
        if not access.can_read(who):
            raise NotFound("playlist not found")
        entries = await conn.fetch(
            """SELECT e.id AS entry_id, e.position, e.added_at, e.added_by, t.id, t.title, t.artist_id,
                      a.name AS artist_name, t.duration_s
               FROM playlist_tracks e JOIN tracks t ON t.id = e.track_id JOIN artists a ON a.id = t.artist_id
               WHERE e.playlist_id = $1 ORDER BY e.position""",
            playlist_id,
        )
        followers = await conn.fetchval("SELECT count(*) FROM playlist_follows WHERE playlist_id = $1", playlist_id)
    return {
        **dict(row),
        "tracks": [dict(e) for e in entries],
        "collaborators": sorted(access.collaborators),
        "followers": followers,
    }


async def list_playlists_of(
    pool: asyncpg.Pool, who: Principal, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Playlists the caller owns, collaborates on or follows."""
    rows = await pool.fetch(
        """SELECT p.*, (p.owner_id = $1) AS owned FROM playlists p
           WHERE p.owner_id = $1
              OR EXISTS (SELECT 1 FROM playlist_collaborators c WHERE c.playlist_id = p.id AND c.user_id = $1)
              OR (p.public AND EXISTS (SELECT 1 FROM playlist_follows f WHERE f.playlist_id = p.id AND f.user_id = $1))
           ORDER BY p.updated_at DESC, p.id LIMIT $2 OFFSET $3""",
        who.user_id, limit, offset,
    )
    return [dict(r) for r in rows]


async def update_playlist(
    pool: asyncpg.Pool, who: Principal, playlist_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    async with transaction(pool) as conn:
        await _authorize(conn, who, playlist_id, manage=True)
        await update_row(conn, "playlists", playlist_id, changes)
        await emit(conn, "playlist.updated", playlist_id, playlist_id=playlist_id, fields=sorted(changes))
    return await get_playlist(pool, who, playlist_id)


async def delete_playlist(pool: asyncpg.Pool, who: Principal, playlist_id: uuid.UUID) -> None:
    async with transaction(pool) as conn:
        await _authorize(conn, who, playlist_id, manage=True)
        await conn.execute("DELETE FROM playlists WHERE id = $1", playlist_id)
        await emit(conn, "playlist.deleted", playlist_id, playlist_id=playlist_id)


async def add_track(
    pool: asyncpg.Pool, who: Principal, playlist_id: uuid.UUID, *, track_id: uuid.UUID, position: int | None
) -> dict[str, Any]:
    async with transaction(pool) as conn:
        await _authorize(conn, who, playlist_id, manage=False)
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tracks WHERE id = $1)", track_id):
            raise NotFound("track not found")
        length = await _length(conn, playlist_id)
        at = insertion_position(position, length)
        await conn.execute(
            "UPDATE playlist_tracks SET position = position + 1 WHERE playlist_id = $1 AND position >= $2",
            playlist_id, at,
        )
        entry_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO playlist_tracks (id, playlist_id, track_id, position, added_by) VALUES ($1, $2, $3, $4, $5)",
            entry_id, playlist_id, track_id, at, who.user_id,
        )
        await _touch(conn, playlist_id)
        await emit(conn, "playlist.track_added", playlist_id, playlist_id=playlist_id, entry_id=entry_id,
                   track_id=track_id, position=at, by=who.user_id)
    return {"entry_id": entry_id, "track_id": track_id, "position": at}


async def move_entry(
    pool: asyncpg.Pool, who: Principal, playlist_id: uuid.UUID, entry_id: uuid.UUID, *, position: int
) -> dict[str, Any]:
    async with transaction(pool) as conn:
        await _authorize(conn, who, playlist_id, manage=False)
        current = await _entry_position(conn, playlist_id, entry_id)
        target = move_target(position, await _length(conn, playlist_id))
        if target > current:
            await conn.execute(
                """UPDATE playlist_tracks SET position = position - 1
                   WHERE playlist_id = $1 AND position > $2 AND position <= $3""",
                playlist_id, current, target,
            )
        elif target < current:
            await conn.execute(
                """UPDATE playlist_tracks SET position = position + 1
                   WHERE playlist_id = $1 AND position >= $2 AND position < $3""",
                playlist_id, target, current,
            )
        await conn.execute("UPDATE playlist_tracks SET position = $2 WHERE id = $1", entry_id, target)
        await _touch(conn, playlist_id)
        await emit(conn, "playlist.track_moved", playlist_id, playlist_id=playlist_id, entry_id=entry_id,
                   from_position=current, position=target, by=who.user_id)
    return {"entry_id": entry_id, "position": target}


async def remove_entry(pool: asyncpg.Pool, who: Principal, playlist_id: uuid.UUID, entry_id: uuid.UUID) -> None:
    async with transaction(pool) as conn:
        await _authorize(conn, who, playlist_id, manage=False)
        current = await _entry_position(conn, playlist_id, entry_id)
        await conn.execute("DELETE FROM playlist_tracks WHERE id = $1", entry_id)
        await conn.execute(
            "UPDATE playlist_tracks SET position = position - 1 WHERE playlist_id = $1 AND position > $2",
            playlist_id, current,
        )
        await _touch(conn, playlist_id)
        await emit(conn, "playlist.track_removed", playlist_id, playlist_id=playlist_id, entry_id=entry_id,
                   by=who.user_id)


async def set_collaborator(
    pool: asyncpg.Pool, who: Principal, playlist_id: uuid.UUID, user_id: uuid.UUID, *, present: bool
) -> None:
    async with transaction(pool) as conn:
        row, _ = await _authorize(conn, who, playlist_id, manage=True)
        if present:
            if user_id == row["owner_id"]:
                raise InvalidInput("the owner is not a collaborator")
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", user_id):
                raise NotFound("user not found")
            await conn.execute(
                "INSERT INTO playlist_collaborators (playlist_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                playlist_id, user_id,
            )
        else:
            await conn.execute(
                "DELETE FROM playlist_collaborators WHERE playlist_id = $1 AND user_id = $2", playlist_id, user_id
            )
        await emit(conn, "playlist.collaborator_" + ("added" if present else "removed"), playlist_id,
                   playlist_id=playlist_id, user_id=user_id)


async def set_follow(pool: asyncpg.Pool, who: Principal, playlist_id: uuid.UUID, *, following: bool) -> None:
    async with transaction(pool) as conn:
        row, access = await _load(conn, playlist_id)
        if not access.can_read(who):
            raise NotFound("playlist not found")
        if following:
            if row["owner_id"] == who.user_id:
                raise Conflict("you own this playlist")
            await conn.execute(
                "INSERT INTO playlist_follows (playlist_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                playlist_id, who.user_id,
            )
        else:
            await conn.execute(
                "DELETE FROM playlist_follows WHERE playlist_id = $1 AND user_id = $2", playlist_id, who.user_id
            )
        await emit(conn, "playlist." + ("followed" if following else "unfollowed"), playlist_id,
                   playlist_id=playlist_id, user_id=who.user_id)


async def _load(conn: asyncpg.Connection, playlist_id: uuid.UUID, *, lock: bool = False) -> tuple[Any, PlaylistAccess]:
    row = await conn.fetchrow(
        "SELECT * FROM playlists WHERE id = $1" + (" FOR UPDATE" if lock else ""), playlist_id
    )
    if row is None:
        raise NotFound("playlist not found")
    collaborators = await conn.fetch("SELECT user_id FROM playlist_collaborators WHERE playlist_id = $1", playlist_id)
    access = PlaylistAccess(
        owner_id=row["owner_id"], public=row["public"], collaborators=frozenset(c["user_id"] for c in collaborators)
    )
    return row, access


async def _authorize(
    conn: asyncpg.Connection, who: Principal, playlist_id: uuid.UUID, *, manage: bool
) -> tuple[Any, PlaylistAccess]:
    """Lock the playlist and check the caller may change it (404 when they may not even see it)."""
    row, access = await _load(conn, playlist_id, lock=True)
    if not access.can_read(who):
        raise NotFound("playlist not found")
    allowed = access.can_manage(who) if manage else access.can_edit_tracks(who)
    if not allowed:
        raise Forbidden("you may not change this playlist")
    return row, access


async def _length(conn: asyncpg.Connection, playlist_id: uuid.UUID) -> int:
    return await conn.fetchval("SELECT count(*) FROM playlist_tracks WHERE playlist_id = $1", playlist_id)


async def _entry_position(conn: asyncpg.Connection, playlist_id: uuid.UUID, entry_id: uuid.UUID) -> int:
    position = await conn.fetchval(
        "SELECT position FROM playlist_tracks WHERE id = $1 AND playlist_id = $2", entry_id, playlist_id
    )
    if position is None:
        raise NotFound("playlist entry not found")
    return position


async def _touch(conn: asyncpg.Connection, playlist_id: uuid.UUID) -> None:
    await conn.execute("UPDATE playlists SET updated_at = now() WHERE id = $1", playlist_id)
