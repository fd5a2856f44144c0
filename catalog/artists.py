"""Artists and albums: created and changed only by the artist's owner (or an admin)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import asyncpg

from accounts.model import Principal
from catalog.model import can_manage_artist
from verseflow.db import transaction, update_row
from verseflow.errors import Forbidden, NotFound
from verseflow.events.outbox import emit


async def create_artist(pool: asyncpg.Pool, who: Principal, *, name: str, bio: str = "") -> dict[str, Any]:
    if not who.can_own_artists():
        raise Forbidden("only artist accounts can create artists")
    async with transaction(pool) as conn:
        row = await conn.fetchrow(
            "INSERT INTO artists (id, owner_id, name, bio) VALUES ($1, $2, $3, $4) RETURNING *",
            uuid.uuid4(), who.user_id, name, bio,
        )
        await emit(conn, "artist.created", row["id"], artist_id=row["id"], owner_id=who.user_id, name=name)
    return dict(row)


async def get_artist(pool: asyncpg.Pool, artist_id: uuid.UUID) -> dict[str, Any]:
    row = await pool.fetchrow("SELECT * FROM artists WHERE id = $1", artist_id)
    if row is None:
        raise NotFound("artist not found")
    return dict(row)


async def list_owned_artists(pool: asyncpg.Pool, who: Principal) -> list[dict[str, Any]]:
    """The artists this account manages, oldest first (the web app's upload form picks from them)."""
    rows = await pool.fetch("SELECT * FROM artists WHERE owner_id = $1 ORDER BY created_at, id", who.user_id)
    return [dict(r) for r in rows]


async def update_artist(
    pool: asyncpg.Pool, who: Principal, artist_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    async with transaction(pool) as conn:
        await require_artist_owner(conn, who, artist_id)
        row = await update_row(conn, "artists", artist_id, changes)
        await emit(conn, "artist.updated", artist_id, artist_id=artist_id, fields=sorted(changes))
    return dict(row)


async def create_album(
    pool: asyncpg.Pool, who: Principal, *, artist_id: uuid.UUID, title: str, release_date: date | None
) -> dict[str, Any]:
    async with transaction(pool) as conn:
        await require_artist_owner(conn, who, artist_id)
        row = await conn.fetchrow(
            "INSERT INTO albums (id, artist_id, title, release_date) VALUES ($1, $2, $3, $4) RETURNING *",
            uuid.uuid4(), artist_id, title, release_date,
        )
        await emit(conn, "album.created", row["id"], album_id=row["id"], artist_id=artist_id, title=title)
    return dict(row)


async def get_album(pool: asyncpg.Pool, album_id: uuid.UUID) -> dict[str, Any]:
    row = await pool.fetchrow("SELECT * FROM albums WHERE id = $1", album_id)
    if row is None:
        raise NotFound("album not found")
    tracks = await pool.fetch(
        "SELECT * FROM tracks WHERE album_id = $1 ORDER BY created_at, id", album_id
    )
    return {**dict(row), "tracks": [dict(t) for t in tracks]}


async def update_album(
    pool: asyncpg.Pool, who: Principal, album_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    async with transaction(pool) as conn:
        artist_id = await conn.fetchval("SELECT artist_id FROM albums WHERE id = $1", album_id)
        if artist_id is None:
            raise NotFound("album not found")
        await require_artist_owner(conn, who, artist_id)
        row = await update_row(conn, "albums", album_id, changes)
        await emit(conn, "album.updated", album_id, album_id=album_id, fields=sorted(changes))
    return dict(row)


async def list_artist_albums(pool: asyncpg.Pool, artist_id: uuid.UUID) -> list[dict[str, Any]]:
    await get_artist(pool, artist_id)
    rows = await pool.fetch("SELECT * FROM albums WHERE artist_id = $1 ORDER BY release_date NULLS LAST, id", artist_id)
    return [dict(r) for r in rows]


async def require_artist_owner(conn: asyncpg.Connection, who: Principal, artist_id: uuid.UUID) -> None:
    """Raise unless ``who`` owns the artist; a missing artist is 404, someone else's is 403."""
    owner_id = await conn.fetchval("SELECT owner_id FROM artists WHERE id = $1", artist_id)
    if owner_id is None:
        raise NotFound("artist not found")
    if not can_manage_artist(who, owner_id):
        raise Forbidden("you do not manage this artist")
