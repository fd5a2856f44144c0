"""Reading the catalog the way Subsonic clients browse it: artists, albums, songs, genres, lists, search.

Only ``ready`` tracks appear (a Subsonic client can do nothing with one it cannot play), and an
artist or album appears only with at least one of them. An artist's tracks without an album form
one more album, its singles (``as-<artist id>``), so every ready track is reachable by browsing.
Every row carries the caller's own star, rating and play count; nothing here reveals another
user's data (playlists are read through ``catalog.playlists``, which applies their access rules).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from accounts.model import Principal
from billing.entitlements import media_entitlement
from subsonic import ids
from subsonic.protocol import NOT_FOUND, SubsonicError
from verseflow.db import like_literal

SINGLES_TITLE = "Singles"
MUSIC_FOLDER_ID = 1
IGNORED_ARTICLES = "The El La Los Las Le Les"

# Ready tracks with what a Subsonic song shows; $1 is always the caller.
_SONGS = """
SELECT t.id, t.title, t.artist_id, t.album_id, t.genre, t.duration_s, t.created_at, t.media,
       ar.name AS artist_name, ar.owner_id, al.title AS album_title, al.release_date,
       st.starred_at, ra.rating,
       (SELECT count(*) FROM plays p WHERE p.track_id = t.id AND p.user_id = $1 AND p.event = 'complete') AS plays,
       row_number() OVER (PARTITION BY coalesce(t.album_id, t.artist_id) ORDER BY t.created_at, t.id) AS number
FROM tracks t JOIN artists ar ON ar.id = t.artist_id LEFT JOIN albums al ON al.id = t.album_id
LEFT JOIN stars st ON st.user_id = $1 AND st.item_type = 'track' AND st.item_id = t.id
LEFT JOIN ratings ra ON ra.user_id = $1 AND ra.item_type = 'track' AND ra.item_id = t.id
WHERE t.status = 'ready'
"""

# Albums, singles included, over ready tracks; $1 is always the caller.
_ALBUMS = """
WITH visible AS (
    SELECT t.id, t.artist_id, t.album_id, coalesce(t.album_id, t.artist_id) AS album_key,
           t.album_id IS NULL AS singles, t.duration_s, t.created_at, t.genre
    FROM tracks t WHERE t.status = 'ready'
), album_rows AS (
    SELECT v.singles, v.album_key, v.artist_id, ar.name AS artist_name,
           coalesce(al.title, $$""" + SINGLES_TITLE + """$$) AS name, al.release_date,
           count(*) AS song_count, coalesce(sum(v.duration_s), 0) AS duration, min(v.created_at) AS created,
           mode() WITHIN GROUP (ORDER BY v.genre) AS genre
    FROM visible v JOIN artists ar ON ar.id = v.artist_id LEFT JOIN albums al ON al.id = v.album_id
    GROUP BY v.singles, v.album_key, v.artist_id, ar.name, al.title, al.release_date
)
SELECT a.*, st.starred_at, ra.rating,
       (SELECT count(*) FROM plays p JOIN visible v ON v.id = p.track_id
        WHERE v.album_key = a.album_key AND p.user_id = $1 AND p.event = 'complete') AS plays,
       (SELECT max(p.created_at) FROM plays p JOIN visible v ON v.id = p.track_id
        WHERE v.album_key = a.album_key AND p.user_id = $1) AS played
FROM album_rows a
LEFT JOIN stars st ON st.user_id = $1 AND st.item_type = CASE WHEN a.singles THEN 'singles' ELSE 'album' END
                  AND st.item_id = a.album_key
LEFT JOIN ratings ra ON ra.user_id = $1 AND ra.item_type = CASE WHEN a.singles THEN 'singles' ELSE 'album' END
                    AND ra.item_id = a.album_key
"""

# Artists with at least one ready track; $1 is always the caller.
_ARTISTS = """
SELECT ar.id, ar.name, st.starred_at, ra.rating,
       (SELECT count(DISTINCT coalesce(t.album_id, t.artist_id)) FROM tracks t
        WHERE t.artist_id = ar.id AND t.status = 'ready') AS album_count
FROM artists ar
LEFT JOIN stars st ON st.user_id = $1 AND st.item_type = 'artist' AND st.item_id = ar.id
LEFT JOIN ratings ra ON ra.user_id = $1 AND ra.item_type = 'artist' AND ra.item_id = ar.id
WHERE EXISTS (SELECT 1 FROM tracks t WHERE t.artist_id = ar.id AND t.status = 'ready')
"""


def album_id_of(row: dict[str, Any] | asyncpg.Record) -> str:
    return ids.encode("album", row["album_id"]) if row["album_id"] else ids.encode("singles", row["artist_id"])


def song(row: asyncpg.Record, who: Principal) -> dict[str, Any]:
    """A ``Child`` (song) element; the file a client receives is the MP3 rung ``stream`` picks."""
    album_id = album_id_of(row)
    bitrate = max((int(r.split("_")[1]) for r in _mp3_rungs(row, who)), default=None)
    return {
        "id": ids.encode("track", row["id"]), "parent": album_id, "isDir": False, "title": row["title"],
        "album": row["album_title"] or SINGLES_TITLE, "artist": row["artist_name"], "track": row["number"],
        "year": row["release_date"].year if row["release_date"] else None, "genre": row["genre"],
        "coverArt": album_id, "duration": round(row["duration_s"] or 0), "bitRate": bitrate,
        "contentType": "audio/mpeg", "suffix": "mp3", "isVideo": False, "created": row["created_at"],
        "albumId": album_id, "artistId": ids.encode("artist", row["artist_id"]), "type": "music",
        "mediaType": "song", "starred": row["starred_at"], "userRating": row["rating"],
        "playCount": row["plays"], "displayArtist": row["artist_name"],
        "genres": [{"name": row["genre"]}] if row["genre"] else [],
    }


def _mp3_rungs(row: Any, who: Principal) -> set[str]:
    media = row["media"] or {}
    available = set(media.get("index", {}).get("mp3", ()))
    return available & media_entitlement(who, owns_track=row["owner_id"] == who.user_id).rungs


def album(row: asyncpg.Record) -> dict[str, Any]:
    """An ``AlbumID3`` element (also used, with ``isDir``, as a directory child)."""
    album_id = ids.encode("singles" if row["singles"] else "album", row["album_key"])
    return {
        "id": album_id, "name": row["name"], "title": row["name"], "album": row["name"],
        "artist": row["artist_name"], "artistId": ids.encode("artist", row["artist_id"]), "coverArt": album_id,
        "songCount": row["song_count"], "duration": round(row["duration"]), "playCount": row["plays"],
        "created": row["created"], "starred": row["starred_at"], "userRating": row["rating"],
        "year": row["release_date"].year if row["release_date"] else None, "genre": row["genre"],
        "played": row["played"], "displayArtist": row["artist_name"], "isCompilation": False,
        "genres": [{"name": row["genre"]}] if row["genre"] else [],
        "parent": ids.encode("artist", row["artist_id"]), "isDir": True,
    }


def _album_id3(row: asyncpg.Record) -> dict[str, Any]:
    """Without the directory-only members (``AlbumID3`` forbids none, but keep it lean)."""
    out = album(row)
    for extra in ("title", "album", "parent", "isDir"):
        out.pop(extra)
    return out


def artist(row: asyncpg.Record) -> dict[str, Any]:
    artist_id = ids.encode("artist", row["id"])
    return {"id": artist_id, "name": row["name"], "coverArt": artist_id, "albumCount": row["album_count"],
            "starred": row["starred_at"], "userRating": row["rating"]}


def _index_letter(name: str) -> str:
    words = name.split()
    if len(words) > 1 and words[0] in IGNORED_ARTICLES.split():
        name = " ".join(words[1:])
    first = name[:1].upper()
    return first if first.isalpha() else "#"


async def artists_index(pool: asyncpg.Pool, who: Principal) -> list[dict[str, Any]]:
    """Artists grouped by initial (the ``index`` list of ``getArtists`` and ``getIndexes``)."""
    rows = await pool.fetch(_ARTISTS + " ORDER BY lower(ar.name), ar.id", who.user_id)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_index_letter(row["name"]), []).append(artist(row))
    return [{"name": letter, "artist": members} for letter, members in sorted(groups.items())]


async def get_artist(pool: asyncpg.Pool, who: Principal, artist_id: uuid.UUID) -> dict[str, Any]:
    row = await pool.fetchrow(_ARTISTS + " AND ar.id = $2", who.user_id, artist_id)
    if row is None:
        raise SubsonicError(NOT_FOUND, "artist not found")
    albums = await pool.fetch(_ALBUMS + " WHERE a.artist_id = $2 ORDER BY a.singles, a.release_date NULLS LAST, "
                                        "lower(a.name), a.album_key", who.user_id, artist_id)
    return {**artist(row), "album": [_album_id3(a) for a in albums]}


async def _album_row(pool: asyncpg.Pool, who: Principal, item: ids.ItemId) -> asyncpg.Record:
    row = await pool.fetchrow(_ALBUMS + " WHERE a.album_key = $2 AND a.singles = $3",
                              who.user_id, item.uuid, item.kind == "singles")
    if row is None:
        raise SubsonicError(NOT_FOUND, "album not found")
    return row


async def album_songs(pool: asyncpg.Pool, who: Principal, item: ids.ItemId) -> list[dict[str, Any]]:
    column = "t.artist_id = $2 AND t.album_id IS NULL" if item.kind == "singles" else "t.album_id = $2"
    rows = await pool.fetch(f"SELECT * FROM ({_SONGS} AND {column}) s ORDER BY number",
                            who.user_id, item.uuid)
    return [song(r, who) for r in rows]


async def get_album(pool: asyncpg.Pool, who: Principal, item: ids.ItemId) -> dict[str, Any]:
    """An album with its songs; a song id answers with the song's album (Ultrasonic does this)."""
    if item.kind == "track":
        item = ids.decode((await get_song(pool, who, item.uuid))["albumId"])
    row = await _album_row(pool, who, item)
    return {**_album_id3(row), "song": await album_songs(pool, who, item)}


async def get_song(pool: asyncpg.Pool, who: Principal, track_id: uuid.UUID) -> dict[str, Any]:
    row = await pool.fetchrow(f"SELECT * FROM ({_SONGS} AND t.artist_id IN "
                              "(SELECT artist_id FROM tracks WHERE id = $2)) s WHERE id = $2", who.user_id, track_id)
    if row is None:
        raise SubsonicError(NOT_FOUND, "song not found")
    return song(row, who)


async def songs(pool: asyncpg.Pool, who: Principal, *, where: str = "TRUE", args: tuple[Any, ...] = (),
                order: str = "lower(title), id", limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """Songs matching ``where`` (over the song columns, parameters from $2), paged."""
    n = len(args)
    rows = await pool.fetch(
        f"SELECT * FROM ({_SONGS}) s WHERE {where} ORDER BY {order} LIMIT ${n + 2} OFFSET ${n + 3}",
        who.user_id, *args, limit, offset,
    )
    return [song(r, who) for r in rows]


async def songs_by_ids(pool: asyncpg.Pool, who: Principal, track_ids: list[str]) -> list[dict[str, Any]]:
    """The ready songs among ``track_ids``, in that order (the track number is still the album's own:
    the window runs over the songs' artists, not over the list)."""
    if not track_ids:
        return []
    rows = await pool.fetch(f"SELECT * FROM ({_SONGS} AND t.artist_id IN (SELECT artist_id FROM tracks "
                            "WHERE id = ANY($2::uuid[]))) s WHERE id = ANY($2::uuid[])", who.user_id, track_ids)
    by_id = {str(r["id"]): r for r in rows}
    return [song(by_id[t], who) for t in track_ids if t in by_id]


async def albums(pool: asyncpg.Pool, who: Principal, *, where: str = "TRUE", args: tuple[Any, ...] = (),
                 order: str, limit: int, offset: int = 0, directory: bool = False) -> list[dict[str, Any]]:
    n = len(args)
    rows = await pool.fetch(
        f"SELECT * FROM ({_ALBUMS}) x WHERE {where} ORDER BY {order} LIMIT ${n + 2} OFFSET ${n + 3}",
        who.user_id, *args, limit, offset,
    )
    return [album(r) if directory else _album_id3(r) for r in rows]


async def artists(pool: asyncpg.Pool, who: Principal, *, where: str = "TRUE", args: tuple[Any, ...] = (),
                  limit: int, offset: int = 0) -> list[dict[str, Any]]:
    n = len(args)
    rows = await pool.fetch(
        f"SELECT * FROM ({_ARTISTS}) x WHERE {where} ORDER BY lower(name), id LIMIT ${n + 2} OFFSET ${n + 3}",
        who.user_id, *args, limit, offset,
    )
    return [artist(r) for r in rows]


# getAlbumList(2) types → (where, order). $2.. are filled by the caller for byYear and byGenre.
ALBUM_LISTS: dict[str, tuple[str, str]] = {
    "random": ("TRUE", "random()"),
    "newest": ("TRUE", "created DESC, album_key"),
    "frequent": ("plays > 0", "plays DESC, album_key"),
    "recent": ("played IS NOT NULL", "played DESC, album_key"),
    "starred": ("starred_at IS NOT NULL", "starred_at DESC, album_key"),
    "alphabeticalByName": ("TRUE", "lower(name), album_key"),
    "alphabeticalByArtist": ("TRUE", "lower(artist_name), lower(name), album_key"),
    "highest": ("rating IS NOT NULL", "rating DESC, album_key"),
}


async def genres(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT genre, count(*) AS songs, count(DISTINCT coalesce(album_id, artist_id)) AS albums
           FROM tracks WHERE status = 'ready' AND genre IS NOT NULL GROUP BY genre ORDER BY lower(genre)"""
    )
    return [{"value": r["genre"], "songCount": r["songs"], "albumCount": r["albums"]} for r in rows]


async def directory(pool: asyncpg.Pool, who: Principal, item: ids.ItemId) -> dict[str, Any]:
    """``getMusicDirectory``: an artist's albums, or an album's (or singles') songs."""
    if item.kind == "artist":
        row = await pool.fetchrow(_ARTISTS + " AND ar.id = $2", who.user_id, item.uuid)
        if row is None:
            raise SubsonicError(NOT_FOUND, "artist not found")
        children = await albums(pool, who, where="artist_id = $2", args=(item.uuid,), directory=True,
                                order="singles, release_date NULLS LAST, lower(name), album_key",
                                limit=10_000)
        return {"id": str(item), "name": row["name"], "starred": row["starred_at"], "userRating": row["rating"],
                "child": children}
    if item.kind == "track":
        item = ids.decode((await get_song(pool, who, item.uuid))["albumId"])
    row = await _album_row(pool, who, item)
    return {"id": str(item), "parent": ids.encode("artist", row["artist_id"]), "name": row["name"],
            "starred": row["starred_at"], "userRating": row["rating"], "playCount": row["plays"],
            "child": await album_songs(pool, who, item)}


def like(text: str) -> str:
    """A substring ILIKE pattern with the wildcards of ``text`` escaped."""
    return "%" + like_literal(text) + "%"
