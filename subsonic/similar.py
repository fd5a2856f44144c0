"""Similar songs and artists for Subsonic clients, from the recommendation service (``ml.recommend``).

``getSimilarSongs`` takes a song, an album or an artist: a song's similar tracks are the model's
(listeners who play it also play these); an album's or artist's are merged from its tracks' lists (at
most ``subsonic_similar_seeds_max`` of them, the most played first), taking each seed's best in turn so
that no single track decides the whole list, without duplicates and without the seed's own tracks. A
track the model does not know yet (or no model at all) gets popular tracks of its genre, as
``GET /v1/tracks/{id}/similar`` does. Similar artists are the artists of those songs, in order.

The recommendation service filters to published tracks; the songs are then read through
``browse`` like every other song list, so only ``ready`` tracks appear, with the caller's stars.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from accounts.model import Principal
from ml import recommend
from subsonic import browse, ids
from subsonic.protocol import NOT_FOUND, SubsonicError
from verseflow.settings import Settings
from verseflow.storage import ObjectStore


async def _seed_tracks(pool: asyncpg.Pool, who: Principal, item: ids.ItemId, limit: int) -> tuple[list[uuid.UUID],
                                                                                                   set[str]]:
    """The tracks to ask about (most played first) and every ready track of the item (to leave out)."""
    if item.kind == "track":
        await browse.get_song(pool, who, item.uuid)  # 70 unless the caller can see the song
        return [item.uuid], {str(item.uuid)}
    where = {"artist": "artist_id = $1", "album": "album_id = $1",
             "singles": "artist_id = $1 AND album_id IS NULL"}[item.kind]
    rows = await pool.fetch(
        f"""SELECT id FROM tracks t WHERE status = 'ready' AND {where}
            ORDER BY (SELECT count(*) FROM plays p WHERE p.track_id = t.id AND p.event = 'complete') DESC,
                     created_at, id""", item.uuid)
    if not rows:
        raise SubsonicError(NOT_FOUND, f"{'artist' if item.kind == 'artist' else 'album'} not found")
    return [r["id"] for r in rows[:limit]], {str(r["id"]) for r in rows}


async def similar_track_ids(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, who: Principal,
                            item: ids.ItemId, count: int) -> list[str]:
    """Up to ``count`` track ids similar to ``item`` (a track, album, singles or artist), best first."""
    seeds, own = await _seed_tracks(pool, who, item, settings.subsonic_similar_seeds_max)
    want = min(settings.rec_limit_max, count + len(own))  # room for the seed's own tracks, dropped below
    answers = await asyncio.gather(*(recommend.similar_tracks(pool, store, settings, who, seed, want)
                                     for seed in seeds))
    lists = [[str(entry["track"]["id"]) for entry in answer["items"]] for answer in answers]
    merged: list[str] = []
    seen = set(own)
    for rank in range(max((len(x) for x in lists), default=0)):
        for ranked in lists:
            if rank < len(ranked) and ranked[rank] not in seen:
                seen.add(ranked[rank])
                merged.append(ranked[rank])
    return merged[:count]


async def similar_songs(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, who: Principal,
                        item: ids.ItemId, count: int) -> list[dict[str, Any]]:
    """``similarSongs``/``similarSongs2``: the similar tracks as song children, in order."""
    if count <= 0:
        return []
    found = await similar_track_ids(pool, store, settings, who, item, count)
    return await browse.songs_by_ids(pool, who, found)


async def similar_artists(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, who: Principal,
                          artist_id: uuid.UUID, count: int) -> list[dict[str, Any]]:
    """The artists of the artist's similar songs, most similar first (the artist itself left out)."""
    if count <= 0:
        return []
    found = await similar_track_ids(pool, store, settings, who, ids.ItemId("artist", artist_id),
                                    settings.rec_limit_max)
    rows = await pool.fetch("SELECT id, artist_id FROM tracks WHERE id = ANY($1::uuid[])", found)
    artist_of = {str(r["id"]): str(r["artist_id"]) for r in rows}
    ordered: list[str] = []
    for track_id in found:
        other = artist_of.get(track_id)
        if other is not None and other != str(artist_id) and other not in ordered:
            ordered.append(other)
    artists = await browse.artists(pool, who, where="id = ANY($2::uuid[])", args=(ordered[:count],),
                                   limit=count)
    position = {ids.encode("artist", a): i for i, a in enumerate(ordered)}
    return sorted(artists, key=lambda a: position[a["id"]])
