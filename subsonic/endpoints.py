"""The Subsonic methods: one plain async function per method, looked up by name in ``METHODS``.

A handler takes the ``Call`` (dependencies, parameters, the authenticated caller) and returns the
payload to put in the envelope, or a ``Binary`` for the methods that answer with bytes (``stream``,
``download``, ``getCoverArt``); the HTTP adapter (``serve_deployments/routes/subsonic.py``) does the
rest. Methods in ``PUBLIC`` answer without credentials.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from redis.asyncio import Redis

from audio import service as audio
from billing.subscriptions import plan_of
from catalog import playlists
from subsonic import browse, ids, library, media, similar
from subsonic.auth import Caller
from subsonic.protocol import GENERIC, MISSING_PARAMETER, NOT_AUTHORIZED, Params, SubsonicError
from verseflow.settings import Settings
from verseflow.storage import ObjectStore

EXTENSIONS = [{"name": "formPost", "versions": [1]}, {"name": "apiKeyAuthentication", "versions": [1]},
              {"name": "indexBasedQueue", "versions": [1]}, {"name": "songLyrics", "versions": [1]}]


@dataclass(frozen=True)
class Call:
    pool: asyncpg.Pool
    redis: Redis
    settings: Settings
    store: ObjectStore
    params: Params
    caller: Caller | None

    @property
    def who(self) -> Any:
        assert self.caller is not None  # every method outside PUBLIC runs after authentication
        return self.caller.principal

    def page(self, name: str, default: int) -> int:
        return self.params.integer(name, default, low=0, high=self.settings.subsonic_list_max)

    def offset(self, name: str) -> int:
        return self.params.integer(name, 0, low=0, high=1_000_000)


@dataclass(frozen=True)
class Binary:
    """Bytes to answer with: a stored object (served with Range) or bytes made here."""

    content_type: str
    key: str | None = None
    data: bytes | None = None
    filename: str | None = None


Payload = dict[str, Any] | Binary
Handler = Callable[[Call], Awaitable[Payload]]


async def ping(call: Call) -> Payload:
    return {}


async def get_license(call: Call) -> Payload:
    return {"license": {"valid": True, "email": call.caller.username if call.caller else None}}


async def get_extensions(call: Call) -> Payload:
    return {"openSubsonicExtensions": EXTENSIONS}


async def token_info(call: Call) -> Payload:
    return {"tokenInfo": {"username": call.caller.username}}


async def get_user(call: Call) -> Payload:
    """The caller's own account (or any, for an admin): Subsonic roles mapped from VerseFlow's."""
    username = call.params.require("username")
    caller = call.caller
    if username.lower() != caller.username.lower():
        if not caller.principal.is_admin:
            raise SubsonicError(NOT_AUTHORIZED, "you may only read your own user")
        row = await call.pool.fetchrow("SELECT email, role FROM users WHERE lower(email) = lower($1) "
                                       "AND status = 'active'", username)
        if row is None:
            raise SubsonicError(70, "user not found")
        username, role = row["email"], row["role"]
    else:
        username, role = caller.username, caller.principal.role.value
    admin = role == "admin"
    return {"user": {
        "username": username, "email": username, "scrobblingEnabled": True, "adminRole": admin,
        "settingsRole": True, "downloadRole": True, "uploadRole": role in ("artist", "admin"),
        "playlistRole": True, "coverArtRole": False, "commentRole": False, "podcastRole": False,
        "streamRole": True, "jukeboxRole": False, "shareRole": False, "videoConversionRole": False,
        "folder": [browse.MUSIC_FOLDER_ID],
    }}


async def get_music_folders(call: Call) -> Payload:
    return {"musicFolders": {"musicFolder": [{"id": browse.MUSIC_FOLDER_ID, "name": "VerseFlow"}]}}


async def get_indexes(call: Call) -> Payload:
    index = await browse.artists_index(call.pool, call.who)
    return {"indexes": {"ignoredArticles": browse.IGNORED_ARTICLES, "lastModified": int(time.time() * 1000),
                        "index": index}}


async def get_artists(call: Call) -> Payload:
    return {"artists": {"ignoredArticles": browse.IGNORED_ARTICLES,
                        "index": await browse.artists_index(call.pool, call.who)}}


async def get_artist(call: Call) -> Payload:
    item = ids.decode(call.params.require("id"), "artist")
    return {"artist": await browse.get_artist(call.pool, call.who, item.uuid)}


async def get_album(call: Call) -> Payload:
    item = ids.decode(call.params.require("id"), "album", "singles", "track")
    return {"album": await browse.get_album(call.pool, call.who, item)}


async def get_song(call: Call) -> Payload:
    item = ids.decode(call.params.require("id"), "track")
    return {"song": await browse.get_song(call.pool, call.who, item.uuid)}


async def get_music_directory(call: Call) -> Payload:
    item = ids.decode(call.params.require("id"), "artist", "album", "singles", "track")
    return {"directory": await browse.directory(call.pool, call.who, item)}


async def get_genres(call: Call) -> Payload:
    return {"genres": {"genre": await browse.genres(call.pool)}}


async def _album_list(call: Call, *, directory: bool) -> list[dict[str, Any]]:
    kind = call.params.require("type")
    size, offset = call.page("size", 10), call.offset("offset")
    if kind == "byYear":
        low = call.params.integer("fromYear", 0)
        high = call.params.integer("toYear", 9999)
        order = "release_date DESC NULLS LAST" if low > high else "release_date NULLS LAST"
        where = ("release_date IS NOT NULL AND extract(year FROM release_date) "
                 "BETWEEN least($2::int, $3::int) AND greatest($2::int, $3::int)")
        return await browse.albums(call.pool, call.who, where=where, args=(low, high),
                                   order=order + ", album_key", limit=size, offset=offset, directory=directory)
    if kind == "byGenre":
        genre = call.params.require("genre")
        return await browse.albums(call.pool, call.who, where="genre = $2", args=(genre,),
                                   order="lower(name), album_key", limit=size, offset=offset, directory=directory)
    if kind not in browse.ALBUM_LISTS:
        raise SubsonicError(GENERIC, f"unknown album list type {kind[:40]!r}")
    where, order = browse.ALBUM_LISTS[kind]
    return await browse.albums(call.pool, call.who, where=where, order=order, limit=size, offset=offset,
                               directory=directory)


async def get_album_list(call: Call) -> Payload:
    return {"albumList": {"album": await _album_list(call, directory=True)}}


async def get_album_list2(call: Call) -> Payload:
    return {"albumList2": {"album": await _album_list(call, directory=False)}}


async def _search(call: Call) -> dict[str, Any]:
    """``search2``/``search3``: a substring of names and titles; an empty query (or ``""``) lists
    everything, paged, which is how Symfonium and others sync a whole library."""
    query = (call.params.get("query") or "").strip()
    if query in ('""', "''", "*"):
        query = ""
    pattern = browse.like(query)
    who, pool = call.who, call.pool
    found: dict[str, Any] = {}
    if (count := call.page("artistCount", 20)) > 0:
        found["artist"] = await browse.artists(pool, who, where="name ILIKE $2", args=(pattern,), limit=count,
                                               offset=call.offset("artistOffset"))
    if (count := call.page("albumCount", 20)) > 0:
        found["album"] = await browse.albums(pool, who, where="name ILIKE $2 OR artist_name ILIKE $2",
                                             args=(pattern,), order="lower(name), album_key", limit=count,
                                             offset=call.offset("albumOffset"))
    if (count := call.page("songCount", 20)) > 0:
        found["song"] = await browse.songs(
            pool, who, where="title ILIKE $2 OR artist_name ILIKE $2 OR album_title ILIKE $2", args=(pattern,),
            order="created_at, id", limit=count, offset=call.offset("songOffset"))
    return found


async def search2(call: Call) -> Payload:
    return {"searchResult2": await _search(call)}


async def search3(call: Call) -> Payload:
    return {"searchResult3": await _search(call)}


async def get_random_songs(call: Call) -> Payload:
    clauses, args = [], []
    if genre := call.params.get("genre"):
        args.append(genre)
        clauses.append(f"genre = ${len(args) + 1}")
    for name, op in (("fromYear", ">="), ("toYear", "<=")):
        if (year := call.params.integer(name)) is not None:
            args.append(year)
            clauses.append(f"extract(year FROM release_date) {op} ${len(args) + 1}")
    songs = await browse.songs(call.pool, call.who, where=" AND ".join(clauses) or "TRUE", args=tuple(args),
                               order="random()", limit=call.page("size", 10))
    return {"randomSongs": {"song": songs}}


async def get_songs_by_genre(call: Call) -> Payload:
    genre = call.params.require("genre")
    songs = await browse.songs(call.pool, call.who, where="genre = $2", args=(genre,), order="created_at, id",
                               limit=call.page("count", 10), offset=call.offset("offset"))
    return {"songsByGenre": {"song": songs}}


async def get_top_songs(call: Call) -> Payload:
    """An artist's songs (by name, as the method defines) ordered by everyone's completed plays: a
    count over all listeners, never whose they were."""
    name = call.params.require("artist")
    order = ("(SELECT count(*) FROM plays p WHERE p.track_id = s.id AND p.event = 'complete') DESC, "
             "created_at, id")
    songs = await browse.songs(call.pool, call.who, where="lower(artist_name) = lower($2)", args=(name,),
                               order=order, limit=call.page("count", 50))
    return {"topSongs": {"song": songs}}


def _similar_count(call: Call, default: int) -> int:
    """``count``, at most what the recommendation service answers for one seed."""
    return call.params.integer("count", default, low=0, high=call.settings.rec_limit_max)


async def get_similar_songs(call: Call) -> Payload:
    """Songs like a song, an album's or an artist's (subsonic/similar.py); never the seed's own."""
    item = ids.decode(call.params.require("id"), "artist", "album", "singles", "track")
    songs = await similar.similar_songs(call.pool, call.store, call.settings, call.who, item,
                                        _similar_count(call, 50))
    return {"similarSongs": {"song": songs}}


async def get_similar_songs2(call: Call) -> Payload:
    item = ids.decode(call.params.require("id"), "artist")
    songs = await similar.similar_songs(call.pool, call.store, call.settings, call.who, item,
                                        _similar_count(call, 50))
    return {"similarSongs2": {"song": songs}}


async def _artist_info(call: Call, *, allowed: tuple[ids.Kind, ...]) -> dict[str, Any]:
    """No biography, images or MusicBrainz data are stored, so only ``similarArtist`` (all of them are
    in the library, so ``includeNotPresent`` changes nothing)."""
    item = ids.decode(call.params.require("id"), *allowed)
    if item.kind == "track":
        item = ids.decode((await browse.get_song(call.pool, call.who, item.uuid))["artistId"])
    elif item.kind != "artist":
        item = ids.decode((await browse.get_album(call.pool, call.who, item))["artistId"])
    await browse.get_artist(call.pool, call.who, item.uuid)  # 70 unless the caller can see the artist
    count = call.params.integer("count", 20, low=0, high=call.settings.subsonic_list_max)
    found = await similar.similar_artists(call.pool, call.store, call.settings, call.who, item.uuid, count)
    return {"similarArtist": found}


async def get_artist_info(call: Call) -> Payload:
    return {"artistInfo": await _artist_info(call, allowed=("artist", "album", "singles", "track"))}


async def get_artist_info2(call: Call) -> Payload:
    return {"artistInfo2": await _artist_info(call, allowed=("artist",))}


async def _album_info(call: Call) -> dict[str, Any]:
    """No notes or artwork URLs are stored: an empty ``albumInfo`` for an album the caller can see."""
    await browse.get_album(call.pool, call.who, ids.decode(call.params.require("id"), "album", "singles", "track"))
    return {}


async def get_album_info(call: Call) -> Payload:
    return {"albumInfo": await _album_info(call)}


async def get_album_info2(call: Call) -> Payload:
    return {"albumInfo": await _album_info(call)}


async def get_scan_status(call: Call) -> Payload:
    count = await call.pool.fetchval("SELECT count(*) FROM tracks WHERE status = 'ready'")
    return {"scanStatus": {"scanning": False, "count": count}}


async def stream(call: Call) -> Payload:
    """The MP3 rung ``maxBitRate`` and the caller's entitlement allow (HTTP Range is served)."""
    item = ids.decode(call.params.require("id"), "track")
    track = await audio.visible_track(call.pool, call.who, item.uuid)
    plan = await plan_of(call.pool, call.settings, call.who.user_id)
    rung = media.mp3_rung(track, call.who, call.params.integer("maxBitRate", 0, low=0), plan=plan)
    return Binary("audio/mpeg", key=media.rung_key(track, rung))


async def download(call: Call) -> Payload:
    """The best rung the caller may have (the uploaded source is the artist's, not a listener's)."""
    item = ids.decode(call.params.require("id"), "track")
    track = await audio.visible_track(call.pool, call.who, item.uuid)
    rung = media.mp3_rung(track, call.who, None, plan=await plan_of(call.pool, call.settings, call.who.user_id))
    safe = "".join(c for c in track["title"] if c.isalnum() or c in " -_")[:100].strip() or "track"
    return Binary("audio/mpeg", key=media.rung_key(track, rung), filename=f"{safe}.mp3")


async def get_cover_art(call: Call) -> Payload:
    item = ids.decode(call.params.require("id"))
    size = call.params.integer("size", 300, low=16, high=call.settings.subsonic_cover_size_max)
    return Binary("image/png", data=media.cover_png(str(item), size))


def _star_items(params: Params) -> list[ids.ItemId]:
    items = [ids.decode(x, "artist", "album", "singles", "track") for x in params.all("id")]
    items += [ids.decode(x, "album", "singles") for x in params.all("albumId")]
    items += [ids.decode(x, "artist") for x in params.all("artistId")]
    if not items:
        raise SubsonicError(MISSING_PARAMETER, "required parameter 'id', 'albumId' or 'artistId' is missing")
    return items


async def star(call: Call) -> Payload:
    await library.set_stars(call.pool, call.who, _star_items(call.params), starred=True)
    return {}


async def unstar(call: Call) -> Payload:
    await library.set_stars(call.pool, call.who, _star_items(call.params), starred=False)
    return {}


async def set_rating(call: Call) -> Payload:
    item = ids.decode(call.params.require("id"), "artist", "album", "singles", "track")
    rating = call.params.integer("rating")
    if rating is None:
        raise SubsonicError(MISSING_PARAMETER, "required parameter 'rating' is missing")
    if not 0 <= rating <= 5:
        raise SubsonicError(GENERIC, "rating must be 0 (remove) to 5")
    await library.set_rating(call.pool, call.who, item, rating)
    return {}


async def get_starred(call: Call) -> Payload:
    return {"starred": await library.starred(call.pool, call.who, directory=True,
                                              limit=call.settings.subsonic_list_max)}


async def get_starred2(call: Call) -> Payload:
    return {"starred2": await library.starred(call.pool, call.who, directory=False,
                                               limit=call.settings.subsonic_list_max)}


async def scrobble(call: Call) -> Payload:
    call.params.require("id")
    track_ids = [ids.decode(x, "track").uuid for x in call.params.all("id")]
    try:
        times = [int(t) for t in call.params.all("time")]
    except ValueError:
        raise SubsonicError(GENERIC, "time must be milliseconds since the epoch") from None
    await library.scrobble(call.pool, call.who, track_ids, times, submission=call.params.boolean("submission", True))
    return {}


async def get_playlists(call: Call) -> Payload:
    username = call.params.get("username")
    if username and username.lower() != call.caller.username.lower():
        raise SubsonicError(NOT_AUTHORIZED, "you may only list your own playlists")
    rows = await playlists.list_playlists_of(call.pool, call.who, limit=call.settings.subsonic_list_max, offset=0)
    return {"playlists": {"playlist": await library.playlist_summaries(call.pool, call.who, rows)}}


async def get_playlist(call: Call) -> Payload:
    item = ids.decode(call.params.require("id"), "playlist")
    return {"playlist": await library.playlist(call.pool, call.who, item.uuid)}


async def create_playlist(call: Call) -> Payload:
    """A new playlist with ``songId``s, or (with ``playlistId``) an existing one's songs replaced."""
    songs = [ids.decode(x, "track").uuid for x in call.params.all("songId")]
    if existing := call.params.get("playlistId"):
        playlist_id = ids.decode(existing, "playlist").uuid
        await library.replace_songs(call.pool, call.who, playlist_id, songs)
    else:
        name = call.params.require("name")[:200]
        playlist_id = (await playlists.create_playlist(call.pool, call.who, name=name))["id"]
        await library.add_songs(call.pool, call.who, playlist_id, songs)
    return {"playlist": await library.playlist(call.pool, call.who, playlist_id)}


async def update_playlist(call: Call) -> Payload:
    playlist_id = ids.decode(call.params.require("playlistId"), "playlist").uuid
    changes: dict[str, Any] = {}
    if (name := call.params.get("name")) is not None:
        changes["name"] = name[:200]
    if (comment := call.params.get("comment")) is not None:
        changes["description"] = comment[:2000]
    if call.params.has("public"):
        changes["public"] = call.params.boolean("public", False)
    if changes:
        await playlists.update_playlist(call.pool, call.who, playlist_id, changes)
    try:
        removed = [int(x) for x in call.params.all("songIndexToRemove")]
    except ValueError:
        raise SubsonicError(GENERIC, "songIndexToRemove must be an integer") from None
    if removed:
        await library.remove_positions(call.pool, call.who, playlist_id, removed)
    added = [ids.decode(x, "track").uuid for x in call.params.all("songIdToAdd")]
    if added:
        await library.add_songs(call.pool, call.who, playlist_id, added)
    return {}


async def delete_playlist(call: Call) -> Payload:
    await playlists.delete_playlist(call.pool, call.who, ids.decode(call.params.require("id"), "playlist").uuid)
    return {}


async def get_play_queue(call: Call) -> Payload:
    """The saved queue, or an empty one (``_empty_queue``)."""
    queue = await library.get_queue(call.pool, call.who, call.caller.username)
    return {"playQueue": queue or _empty_queue(call.caller.username)}


async def save_play_queue(call: Call) -> Payload:
    track_ids = [ids.decode(x, "track").uuid for x in call.params.all("id")]
    current = call.params.get("current")
    await library.save_queue(call.pool, call.who, track_ids, ids.decode(current, "track").uuid if current else None,
                             call.params.integer("position", 0, low=0) or 0, call.params.get("c") or "")
    return {}


def _empty_queue(username: str) -> dict[str, Any]:
    """No saved queue: an empty one changed at the epoch (the schema requires the element, and a client
    comparing ``changed`` then keeps its own)."""
    return {"username": username, "position": 0, "changedBy": "", "changed": datetime.fromtimestamp(0, UTC),
            "entry": []}


async def get_play_queue_by_index(call: Call) -> Payload:
    queue = await library.get_queue_by_index(call.pool, call.who, call.caller.username)
    return {"playQueueByIndex": queue or _empty_queue(call.caller.username)}


async def save_play_queue_by_index(call: Call) -> Payload:
    """The ``indexBasedQueue`` extension: the current entry by position, so a song queued twice resumes
    at the right occurrence. ``currentIndex`` is required with songs and must fall inside the queue."""
    track_ids = [ids.decode(x, "track").uuid for x in call.params.all("id")]
    index = None
    if track_ids:
        if not call.params.has("currentIndex"):
            raise SubsonicError(MISSING_PARAMETER, "required parameter 'currentIndex' is missing")
        index = call.params.integer("currentIndex", 0)
        if index is None or not 0 <= index < len(track_ids):
            raise SubsonicError(GENERIC, f"currentIndex must be between 0 and {len(track_ids) - 1}")
    await library.save_queue(call.pool, call.who, track_ids, track_ids[index] if index is not None else None,
                             call.params.integer("position", 0, low=0) or 0, call.params.get("c") or "",
                             current_index=index)
    return {}


async def get_now_playing(call: Call) -> Payload:
    """Started plays (``scrobble`` with ``submission=false``, or ``POST /v1/plays``) nothing followed
    within ``VERSEFLOW_SUBSONIC_NOW_PLAYING_MINUTES``: the caller's own, everyone's for an admin."""
    entries = await library.now_playing(call.pool, call.who, call.settings.subsonic_now_playing_minutes)
    return {"nowPlaying": {"entry": entries}}


async def get_bookmarks(call: Call) -> Payload:
    return {"bookmarks": {"bookmark": await library.bookmarks(call.pool, call.who, call.caller.username,
                                                              call.settings.subsonic_list_max)}}


async def create_bookmark(call: Call) -> Payload:
    track_id = ids.decode(call.params.require("id"), "track").uuid
    call.params.require("position")
    position = call.params.integer("position", 0, low=0, high=10**12)
    await library.save_bookmark(call.pool, call.who, track_id, position or 0, (call.params.get("comment") or "")[:2000])
    return {}


async def delete_bookmark(call: Call) -> Payload:
    await library.delete_bookmark(call.pool, call.who, ids.decode(call.params.require("id"), "track").uuid)
    return {}


async def get_lyrics(call: Call) -> Payload:
    """VerseFlow stores no lyrics: the spec's empty answer (an empty ``value``), not an error, so a
    client shows "no lyrics" rather than a failure."""
    return {"lyrics": {"value": ""}}


async def get_lyrics_by_song_id(call: Call) -> Payload:
    """The ``songLyrics`` extension: an empty ``lyricsList`` for a song the caller can see (70 otherwise);
    no lyrics are stored."""
    await browse.get_song(call.pool, call.who, ids.decode(call.params.require("id"), "track").uuid)
    return {"lyricsList": {"structuredLyrics": []}}


METHODS: dict[str, Handler] = {
    "ping": ping,
    "getLicense": get_license,
    "getOpenSubsonicExtensions": get_extensions,
    "tokenInfo": token_info,
    "getUser": get_user,
    "getMusicFolders": get_music_folders,
    "getIndexes": get_indexes,
    "getArtists": get_artists,
    "getArtist": get_artist,
    "getAlbum": get_album,
    "getSong": get_song,
    "getMusicDirectory": get_music_directory,
    "getGenres": get_genres,
    "getAlbumList": get_album_list,
    "getAlbumList2": get_album_list2,
    "search2": search2,
    "search3": search3,
    "getRandomSongs": get_random_songs,
    "getSongsByGenre": get_songs_by_genre,
    "getTopSongs": get_top_songs,
    "getSimilarSongs": get_similar_songs,
    "getSimilarSongs2": get_similar_songs2,
    "getArtistInfo": get_artist_info,
    "getArtistInfo2": get_artist_info2,
    "getAlbumInfo": get_album_info,
    "getAlbumInfo2": get_album_info2,
    "getScanStatus": get_scan_status,
    "stream": stream,
    "download": download,
    "getCoverArt": get_cover_art,
    "star": star,
    "unstar": unstar,
    "setRating": set_rating,
    "getStarred": get_starred,
    "getStarred2": get_starred2,
    "scrobble": scrobble,
    "getPlaylists": get_playlists,
    "getPlaylist": get_playlist,
    "createPlaylist": create_playlist,
    "updatePlaylist": update_playlist,
    "deletePlaylist": delete_playlist,
    "getPlayQueue": get_play_queue,
    "savePlayQueue": save_play_queue,
    "getPlayQueueByIndex": get_play_queue_by_index,
    "savePlayQueueByIndex": save_play_queue_by_index,
    "getNowPlaying": get_now_playing,
    "getBookmarks": get_bookmarks,
    "createBookmark": create_bookmark,
    "deleteBookmark": delete_bookmark,
    "getLyrics": get_lyrics,
    "getLyricsBySongId": get_lyrics_by_song_id,
}

#: Answered without credentials (the spec: clients call these before signing in).
PUBLIC = frozenset({"getOpenSubsonicExtensions"})
