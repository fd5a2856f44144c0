"""A listener's own library through Subsonic: stars, ratings, scrobbles, the play queue, playlists.

Stars and ratings are per user and per item (artist, album, singles, track). Scrobbles become
``complete`` plays (``audio.service.record_play``: the same table and event as ``POST /v1/plays``),
with a play id derived from (user, track, time) so a client retrying a scrobble records it once.
Playlists go through ``catalog.playlists``, which applies the access rules (a private playlist of
someone else is "not found"; changing one you may only read is "not authorized").
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg

from accounts.model import Principal
from audio import service as audio
from catalog import library, playlists
from subsonic import browse, ids
from subsonic.protocol import NOT_FOUND, SubsonicError
from verseflow.errors import NotFound

_SCROBBLE_NAMESPACE = uuid.UUID("6f1c7c1e-3a51-4c55-9a0c-5b1e0f6c2d7a")
_ITEM_TABLES = {"artist": "SELECT EXISTS (SELECT 1 FROM artists WHERE id = $1)",
                "album": "SELECT EXISTS (SELECT 1 FROM albums WHERE id = $1)",
                "singles": "SELECT EXISTS (SELECT 1 FROM tracks WHERE artist_id = $1 AND album_id IS NULL "
                           "AND status = 'ready')",
                "track": "SELECT EXISTS (SELECT 1 FROM tracks WHERE id = $1 AND status = 'ready')"}


async def _require_item(pool: asyncpg.Pool, item: ids.ItemId) -> None:
    if not await pool.fetchval(_ITEM_TABLES[item.kind], item.uuid):
        raise SubsonicError(NOT_FOUND, f"no {item.kind} with id {item}")


async def set_stars(pool: asyncpg.Pool, who: Principal, items: list[ids.ItemId], *, starred: bool) -> None:
    """Starred songs are the library (``catalog.library``): the same rows and the same events."""
    for item in items:
        if item.kind == "track":
            try:
                await (library.save_track if starred else library.unsave_track)(pool, who, item.uuid)
            except NotFound as exc:
                raise SubsonicError(NOT_FOUND, f"no {item.kind} with id {item}") from exc
        elif starred:
            await _require_item(pool, item)
            await pool.execute("INSERT INTO stars (user_id, item_type, item_id) VALUES ($1, $2, $3) "
                               "ON CONFLICT DO NOTHING", who.user_id, item.kind, item.uuid)
        else:
            await pool.execute("DELETE FROM stars WHERE user_id = $1 AND item_type = $2 AND item_id = $3",
                               who.user_id, item.kind, item.uuid)


async def set_rating(pool: asyncpg.Pool, who: Principal, item: ids.ItemId, rating: int) -> None:
    """1..5 rates, 0 removes the rating."""
    if rating == 0:
        await pool.execute("DELETE FROM ratings WHERE user_id = $1 AND item_type = $2 AND item_id = $3",
                           who.user_id, item.kind, item.uuid)
        return
    await _require_item(pool, item)
    await pool.execute(
        """INSERT INTO ratings (user_id, item_type, item_id, rating) VALUES ($1, $2, $3, $4)
           ON CONFLICT (user_id, item_type, item_id) DO UPDATE SET rating = EXCLUDED.rating, rated_at = now()""",
        who.user_id, item.kind, item.uuid, rating,
    )


async def starred(pool: asyncpg.Pool, who: Principal, *, directory: bool, limit: int) -> dict[str, Any]:
    return {
        "artist": await browse.artists(pool, who, where="starred_at IS NOT NULL", limit=limit),
        "album": await browse.albums(pool, who, where="starred_at IS NOT NULL", order="starred_at DESC, album_key",
                                     limit=limit, directory=directory),
        "song": await browse.songs(pool, who, where="starred_at IS NOT NULL", order="starred_at DESC, id",
                                   limit=limit),
    }


async def scrobble(pool: asyncpg.Pool, who: Principal, track_ids: list[uuid.UUID], times_ms: list[int],
                   *, submission: bool) -> None:
    """A submission is a completed play; ``submission=false`` ("now playing") records its start."""
    now = int(time.time() * 1000)
    for i, track_id in enumerate(track_ids):
        at = times_ms[i] if i < len(times_ms) else now
        play_id = uuid.uuid5(_SCROBBLE_NAMESPACE, f"{who.user_id}:{track_id}:{at}")
        try:
            await audio.record_play(pool, who, {"play_id": play_id, "track_id": track_id,
                                                "event": "complete" if submission else "start", "position_ms": 0})
        except Exception as exc:  # InvalidInput: not playable; NotFound: not visible
            raise SubsonicError(NOT_FOUND, f"song {ids.encode('track', track_id)} cannot be scrobbled") from exc


async def songs_in_order(pool: asyncpg.Pool, who: Principal, track_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The ready songs among ``track_ids``, in that order (repeats kept)."""
    found = {s["id"]: s for s in await browse.songs(pool, who, where="id = ANY($2::uuid[])", args=(track_ids,),
                                                    limit=max(1, len(track_ids)))}
    return [found[ids.encode("track", t)] for t in track_ids if ids.encode("track", t) in found]


async def save_queue(pool: asyncpg.Pool, who: Principal, track_ids: list[uuid.UUID], current: uuid.UUID | None,
                     position_ms: int, client: str, *, current_index: int | None = None) -> None:
    """One queue per user; ``current_index`` (savePlayQueueByIndex) tells which of repeated songs is current."""
    if not track_ids:
        await pool.execute("DELETE FROM play_queues WHERE user_id = $1", who.user_id)
        return
    await pool.execute(
        """INSERT INTO play_queues (user_id, track_ids, current_id, current_index, position_ms, changed_by,
                                    changed_at)
           VALUES ($1, $2, $3, $4, $5, $6, now())
           ON CONFLICT (user_id) DO UPDATE SET track_ids = EXCLUDED.track_ids, current_id = EXCLUDED.current_id,
               current_index = EXCLUDED.current_index, position_ms = EXCLUDED.position_ms,
               changed_by = EXCLUDED.changed_by, changed_at = now()""",
        who.user_id, track_ids, current, current_index, position_ms, client[:200],
    )


async def get_queue(pool: asyncpg.Pool, who: Principal, username: str) -> dict[str, Any] | None:
    row = await pool.fetchrow("SELECT * FROM play_queues WHERE user_id = $1", who.user_id)
    if row is None:
        return None
    return {"current": ids.encode("track", row["current_id"]) if row["current_id"] else None,
            "position": row["position_ms"], "username": username, "changed": row["changed_at"],
            "changedBy": row["changed_by"], "entry": await songs_in_order(pool, who, list(row["track_ids"]))}


async def get_queue_by_index(pool: asyncpg.Pool, who: Principal, username: str) -> dict[str, Any] | None:
    """``PlayQueueByIndex``: the saved queue with the current entry's index among the songs the caller
    can still see (a queue saved by song id points at that song's first occurrence)."""
    row = await pool.fetchrow("SELECT * FROM play_queues WHERE user_id = $1", who.user_id)
    if row is None:
        return None
    stored = list(row["track_ids"])
    entry = await songs_in_order(pool, who, stored)
    visible = {s["id"] for s in entry}
    index = row["current_index"]
    if index is None and row["current_id"] in stored:
        index = stored.index(row["current_id"])
    queue: dict[str, Any] = {"position": row["position_ms"], "username": username, "changed": row["changed_at"],
                             "changedBy": row["changed_by"], "entry": entry}
    if index is not None and index < len(stored) and ids.encode("track", stored[index]) in visible:
        queue["currentIndex"] = sum(ids.encode("track", t) in visible for t in stored[:index])
    elif entry:
        queue["currentIndex"] = 0
    return queue


async def playlist_summaries(pool: asyncpg.Pool, who: Principal, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``Playlist`` elements: counts and durations over ready tracks; owners by display name (no e-mails)."""
    if not rows:
        return []
    stats = {r["playlist_id"]: r for r in await pool.fetch(
        """SELECT e.playlist_id, count(t.id) AS songs, coalesce(sum(t.duration_s), 0) AS duration
           FROM playlist_tracks e JOIN tracks t ON t.id = e.track_id AND t.status = 'ready'
           WHERE e.playlist_id = ANY($1::uuid[]) GROUP BY e.playlist_id""", [r["id"] for r in rows])}
    owners = {r["id"]: r["display_name"] for r in await pool.fetch(
        "SELECT id, display_name FROM users WHERE id = ANY($1::uuid[])", list({r["owner_id"] for r in rows}))}
    out = []
    for row in rows:
        stat = stats.get(row["id"])
        out.append({"id": ids.encode("playlist", row["id"]), "name": row["name"], "comment": row["description"],
                    "owner": owners.get(row["owner_id"], ""), "public": row["public"],
                    "songCount": stat["songs"] if stat else 0, "duration": round(stat["duration"]) if stat else 0,
                    "created": row["created_at"], "changed": row["updated_at"],
                    "coverArt": ids.encode("playlist", row["id"]),
                    "readonly": row["owner_id"] != who.user_id})
    return out


async def playlist(pool: asyncpg.Pool, who: Principal, playlist_id: uuid.UUID) -> dict[str, Any]:
    """``PlaylistWithSongs`` (catalog.playlists decides visibility: NotFound maps to 70)."""
    found = await playlists.get_playlist(pool, who, playlist_id)
    (summary,) = await playlist_summaries(pool, who, [found])
    summary["readonly"] = who.user_id != found["owner_id"] and who.user_id not in found["collaborators"]
    summary["entry"] = await songs_in_order(pool, who, [e["id"] for e in found["tracks"]])
    return summary


async def add_songs(pool: asyncpg.Pool, who: Principal, playlist_id: uuid.UUID, track_ids: list[uuid.UUID]) -> None:
    for track_id in track_ids:
        await browse.get_song(pool, who, track_id)  # ready and visible, or 70
        await playlists.add_track(pool, who, playlist_id, track_id=track_id, position=None)


async def remove_positions(pool: asyncpg.Pool, who: Principal, playlist_id: uuid.UUID, positions: list[int]) -> None:
    """Remove entries by their index in the playlist as the client saw it (highest first)."""
    found = await playlists.get_playlist(pool, who, playlist_id)
    entries = found["tracks"]
    for index in sorted(set(positions), reverse=True):
        if 0 <= index < len(entries):
            await playlists.remove_entry(pool, who, playlist_id, entries[index]["entry_id"])


async def replace_songs(pool: asyncpg.Pool, who: Principal, playlist_id: uuid.UUID, track_ids: list[uuid.UUID]) -> None:
    found = await playlists.get_playlist(pool, who, playlist_id)
    await remove_positions(pool, who, playlist_id, list(range(len(found["tracks"]))))
    await add_songs(pool, who, playlist_id, track_ids)


async def now_playing(pool: asyncpg.Pool, who: Principal, minutes: int) -> list[dict[str, Any]]:
    """``NowPlayingEntry`` elements: a listener's latest play event within ``minutes``, when it is a start
    or progress (a later completed play, or a start of another track, ends it). Usernames are e-mail
    addresses, so a listener sees only their own; an admin sees everyone's. Plays do not record the
    client, so ``playerId`` is 0 (the schema requires one)."""
    rows = await pool.fetch(
        """SELECT * FROM (
               SELECT DISTINCT ON (p.user_id) p.user_id, p.track_id, p.event, p.created_at, u.email
               FROM plays p JOIN users u ON u.id = p.user_id
               WHERE p.created_at > now() - make_interval(mins => $1) AND ($2 OR p.user_id = $3)
               ORDER BY p.user_id, p.created_at DESC, p.id DESC) latest
           WHERE event <> 'complete' ORDER BY created_at DESC""",
        minutes, who.is_admin, who.user_id,
    )
    songs = {s["id"]: s for s in await browse.songs_by_ids(pool, who, list({str(r["track_id"]) for r in rows}))}
    now = await pool.fetchval("SELECT now()")
    out = []
    for row in rows:
        if (song := songs.get(ids.encode("track", row["track_id"]))) is not None:
            ago = int((now - row["created_at"]).total_seconds() // 60)
            out.append({**song, "username": row["email"], "minutesAgo": ago, "playerId": 0})
    return out


async def save_bookmark(pool: asyncpg.Pool, who: Principal, track_id: uuid.UUID, position_ms: int,
                        comment: str) -> None:
    """One bookmark per user and song (a new one replaces it), only on a song the caller can see."""
    await browse.get_song(pool, who, track_id)  # ready and visible, or 70
    await pool.execute(
        """INSERT INTO bookmarks (user_id, track_id, position_ms, comment) VALUES ($1, $2, $3, $4)
           ON CONFLICT (user_id, track_id) DO UPDATE SET position_ms = EXCLUDED.position_ms,
               comment = EXCLUDED.comment, changed_at = now()""",
        who.user_id, track_id, position_ms, comment,
    )


async def delete_bookmark(pool: asyncpg.Pool, who: Principal, track_id: uuid.UUID) -> None:
    await pool.execute("DELETE FROM bookmarks WHERE user_id = $1 AND track_id = $2", who.user_id, track_id)


async def bookmarks(pool: asyncpg.Pool, who: Principal, username: str, limit: int) -> list[dict[str, Any]]:
    """The caller's bookmarks, latest changed first, on songs they can still see (others are kept, not
    shown: a track hidden for a while comes back with its bookmark)."""
    rows = await pool.fetch("SELECT * FROM bookmarks WHERE user_id = $1 ORDER BY changed_at DESC, track_id "
                            "LIMIT $2", who.user_id, limit)
    songs = {s["id"]: s for s in await browse.songs_by_ids(pool, who, [str(r["track_id"]) for r in rows])}
    out = []
    for row in rows:
        if (song := songs.get(ids.encode("track", row["track_id"]))) is not None:
            mark = {"position": row["position_ms"], "username": username, "created": row["created_at"],
                    "changed": row["changed_at"], "entry": song}
            if row["comment"]:
                mark["comment"] = row["comment"]
            out.append(mark)
    return out
