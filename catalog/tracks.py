"""Tracks: metadata now; the audio pipeline adds files and processing states to the same rows."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from accounts.model import Principal
from catalog.artists import require_artist_owner
from verseflow.db import transaction, update_row
from verseflow.errors import InvalidInput, NotFound
from verseflow.events.outbox import emit


async def create_track(
    pool: asyncpg.Pool, who: Principal, *, title: str, artist_id: uuid.UUID, album_id: uuid.UUID | None = None,
    genre: str | None = None, duration_s: float | None = None, status: str = "metadata",
) -> dict[str, Any]:
    async with transaction(pool) as conn:
        await require_artist_owner(conn, who, artist_id)
        if album_id is not None:
            await require_album_of(conn, album_id, artist_id)
        row = await conn.fetchrow(
            """INSERT INTO tracks (id, artist_id, album_id, title, genre, duration_s, status)
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *""",
            uuid.uuid4(), artist_id, album_id, title, genre, duration_s, status,
        )
        await emit(conn, "track.created", row["id"], track_id=row["id"], artist_id=artist_id, title=title)
    return await get_track(pool, row["id"])


async def get_track(pool: asyncpg.Pool, track_id: uuid.UUID) -> dict[str, Any]:
    """The track row with its artist's name and owner and its album's title."""
    row = await pool.fetchrow(
        """SELECT t.*, a.name AS artist_name, a.owner_id, al.title AS album_title
           FROM tracks t JOIN artists a ON a.id = t.artist_id LEFT JOIN albums al ON al.id = t.album_id
           WHERE t.id = $1""",
        track_id,
    )
    if row is None:
        raise NotFound("track not found")
    return dict(row)


async def update_track(
    pool: asyncpg.Pool, who: Principal, track_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    async with transaction(pool) as conn:
        artist_id = await conn.fetchval("SELECT artist_id FROM tracks WHERE id = $1 FOR UPDATE", track_id)
        if artist_id is None:
            raise NotFound("track not found")
        await require_artist_owner(conn, who, artist_id)
        if changes.get("album_id") is not None:
            await require_album_of(conn, changes["album_id"], artist_id)
        await update_row(conn, "tracks", track_id, changes)
        await emit(conn, "track.updated", track_id, track_id=track_id, fields=sorted(changes))
    return await get_track(pool, track_id)


async def delete_track(pool: asyncpg.Pool, who: Principal, track_id: uuid.UUID) -> None:
    async with transaction(pool) as conn:
        artist_id = await conn.fetchval("SELECT artist_id FROM tracks WHERE id = $1 FOR UPDATE", track_id)
        if artist_id is None:
            raise NotFound("track not found")
        await require_artist_owner(conn, who, artist_id)
        playlists = await conn.fetch(
            "SELECT DISTINCT playlist_id FROM playlist_tracks WHERE track_id = $1", track_id
        )
        await conn.execute("DELETE FROM tracks WHERE id = $1", track_id)
        await _renumber(conn, [p["playlist_id"] for p in playlists])
        await emit(conn, "track.deleted", track_id, track_id=track_id, artist_id=artist_id)


async def list_artist_tracks(
    pool: asyncpg.Pool, artist_id: uuid.UUID, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT * FROM tracks WHERE artist_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
        artist_id, limit, offset,
    )
    return [dict(r) for r in rows]


async def require_album_of(conn: asyncpg.Connection, album_id: uuid.UUID, artist_id: uuid.UUID) -> None:
    album_artist = await conn.fetchval("SELECT artist_id FROM albums WHERE id = $1", album_id)
    if album_artist is None:
        raise NotFound("album not found")
    if album_artist != artist_id:
        raise InvalidInput("the album belongs to another artist")


async def _renumber(conn: asyncpg.Connection, playlist_ids: list[uuid.UUID]) -> None:
    """Close the gaps a deleted track left in playlists, keeping positions dense."""
    if playlist_ids:
        await conn.execute(
            """UPDATE playlist_tracks e SET position = r.rn - 1
               FROM (SELECT id, row_number() OVER (PARTITION BY playlist_id ORDER BY position) AS rn
                     FROM playlist_tracks WHERE playlist_id = ANY($1::uuid[])) r
               WHERE e.id = r.id AND e.position <> r.rn - 1""",
            playlist_ids,
        )
