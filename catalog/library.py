"""A listener's library of saved tracks: ``/v1/me/library/tracks`` and Subsonic's starred songs are one list.

Saving is a star on a track (the ``stars`` table of ``0014_subsonic.sql``, ``item_type = 'track'``), so a
track starred in a Subsonic app is in the library, and one saved over the API is starred in the app.
Each change that changes something emits ``track.saved`` or ``track.unsaved`` in the same transaction:
the recommendation signals (``ml/interactions.py``) count the library from those events.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from accounts.model import Principal
from verseflow.db import transaction
from verseflow.errors import NotFound
from verseflow.events.outbox import emit


async def save_track(pool: asyncpg.Pool, who: Principal, track_id: uuid.UUID) -> bool:
    """Put a published track into the library; False when it was there already (idempotent PUT)."""
    async with transaction(pool) as conn:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tracks WHERE id = $1 AND status = 'ready')",
                                   track_id):
            raise NotFound("track not found")
        added = await conn.fetchval(
            """INSERT INTO stars (user_id, item_type, item_id) VALUES ($1, 'track', $2)
               ON CONFLICT DO NOTHING RETURNING true""", who.user_id, track_id)
        if added:
            await emit(conn, "track.saved", track_id, track_id=track_id, user_id=who.user_id)
    return bool(added)


async def unsave_track(pool: asyncpg.Pool, who: Principal, track_id: uuid.UUID) -> bool:
    """Take a track out of the library; False when it was not there (idempotent DELETE)."""
    async with transaction(pool) as conn:
        removed = await conn.fetchval(
            "DELETE FROM stars WHERE user_id = $1 AND item_type = 'track' AND item_id = $2 RETURNING true",
            who.user_id, track_id)
        if removed:
            await emit(conn, "track.unsaved", track_id, track_id=track_id, user_id=who.user_id)
    return bool(removed)


async def saved_tracks(pool: asyncpg.Pool, who: Principal, *, limit: int, offset: int) -> list[dict[str, Any]]:
    """The library, newest first; tracks no longer published are left out (they come back if republished)."""
    rows = await pool.fetch(
        """SELECT t.id, t.title, t.artist_id, a.name AS artist_name, t.album_id, t.genre, t.duration_s,
                  s.starred_at AS saved_at
           FROM stars s JOIN tracks t ON t.id = s.item_id JOIN artists a ON a.id = t.artist_id
           WHERE s.user_id = $1 AND s.item_type = 'track' AND t.status = 'ready'
           ORDER BY s.starred_at DESC, t.id LIMIT $2 OFFSET $3""",
        who.user_id, limit, offset)
    return [dict(r) for r in rows]
