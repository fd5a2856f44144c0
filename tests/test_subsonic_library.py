"""The Subsonic API's listening side through the real app: stream (rungs within the entitlement,
HTTP Range, bytes decoded by ffprobe), download, covers, scrobbles into plays, stars, ratings,
playlists and the play queue. The track is published by the real transcoding attempt
(``audio/jobs.py``) run in-process, without Ray."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from accounts.model import Principal, Role
from audio import jobs, service
from audio.landmark_index import LocalCatalogue
from tests.audio_fixtures import tone, write_audio
from tests.subsonic_support import NS, seed, subsonic_user
from verseflow.storage import object_store

RATE = 44100


async def _nobody(*_: object) -> None:
    return None


@pytest.fixture(scope="module")
def published_holder() -> dict:
    return {}


@pytest.fixture
async def published(api, pool, settings, tmp_path, published_holder) -> dict:
    """A 4 s track, uploaded and published into the app's own object store (once per module)."""
    if published_holder:
        return published_holder
    owner = await api.user("artist")
    name = f"Streamer {uuid.uuid4().hex[:6]}"
    artist = await api.http.post("/v1/artists", json={"name": name}, headers=owner["headers"])
    who = Principal(uuid.UUID(owner["id"]), Role.ARTIST)
    store = object_store(settings)
    track_id = uuid.uuid4()
    source = write_audio(tmp_path / "source.flac", tone(330.0, seconds=4.0), RATE)
    stored = store.put_file(service.source_key(track_id), source)
    fields = service.UploadFields("Tone poem", uuid.UUID(artist.json()["id"]))
    await service.accept_upload(pool, store, settings, who, track_id, fields, stored)
    assert await jobs.run(pool, store, settings, track_id, _nobody, LocalCatalogue()) == "succeeded"
    published_holder.update(owner=owner, name=name, artist_id=artist.json()["id"], track_id=str(track_id))
    return published_holder


def probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration,bit_rate,format_name",
                          "-of", "json", str(path)], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)["format"]


async def test_browse_from_artists_down_to_stream_decoded_by_ffprobe(api, published, tmp_path):
    _, sub = await subsonic_user(api)
    artists = await sub.json("getArtists")
    artist = next(a for index in artists["artists"]["index"] for a in index["artist"] if a["name"] == published["name"])
    albums = (await sub.json("getArtist", id=artist["id"]))["artist"]["album"]
    assert [a["name"] for a in albums] == ["Singles"]
    song = (await sub.json("getAlbum", id=albums[0]["id"]))["album"]["song"][0]
    assert song["id"] == f"tr-{published['track_id']}" and song["bitRate"] == 128 and song["suffix"] == "mp3"

    response = await sub.raw("stream", id=song["id"], maxBitRate=320)
    assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"
    (tmp_path / "listener.mp3").write_bytes(response.content)
    listened = probe(tmp_path / "listener.mp3")
    assert listened["format_name"] == "mp3" and abs(float(listened["duration"]) - 4.0) < 0.3
    assert int(listened["bit_rate"]) < 200_000  # mp3_128: the listener's plan excludes mp3_320

    ranged = await sub.raw("stream", id=song["id"], headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and len(ranged.content) == 100
    assert ranged.content == response.content[:100]

    owner_sub = (await subsonic_user_for(api, published["owner"]))
    full = await owner_sub.raw("stream", id=song["id"])
    (tmp_path / "owner.mp3").write_bytes(full.content)
    assert int(probe(tmp_path / "owner.mp3")["bit_rate"]) > 250_000  # the artist gets mp3_320
    capped = await owner_sub.raw("stream", id=song["id"], maxBitRate=128, format="mp3")
    assert capped.content == response.content

    download = await sub.raw("download", id=song["id"])
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    assert download.content == response.content


async def subsonic_user_for(api, user: dict):
    from tests.subsonic_support import Subsonic, app_password

    created = await app_password(api, user)
    return Subsonic(api.http, user["email"], created["password"])


async def test_stream_errors_and_no_play_counted(api, published, pool, library_seed):
    _, sub = await subsonic_user(api)
    await sub.error("stream", 10)
    await sub.error("stream", 70, id=f"tr-{uuid.uuid4()}")
    await sub.error("stream", 70, id=f"tr-{library_seed['tracks']['Opening']}")  # ready metadata, no audio
    before = await pool.fetchval("SELECT count(*) FROM plays WHERE track_id = $1", uuid.UUID(published["track_id"]))
    await sub.raw("stream", id=f"tr-{published['track_id']}")
    after = await pool.fetchval("SELECT count(*) FROM plays WHERE track_id = $1", uuid.UUID(published["track_id"]))
    assert after == before


async def test_scrobble_feeds_plays_once_per_submission(api, published, pool):
    user, sub = await subsonic_user(api)
    song_id = f"tr-{published['track_id']}"
    await sub.json("scrobble", id=song_id, submission="false")
    await sub.json("scrobble", id=song_id, time=1_780_000_000_000)
    await sub.json("scrobble", id=song_id, time=1_780_000_000_000, post=True)  # a retry
    rows = await pool.fetch("SELECT event FROM plays WHERE user_id = $1 ORDER BY id", uuid.UUID(user["id"]))
    assert [r["event"] for r in rows] == ["start", "complete"]
    song = await sub.json("getSong", id=song_id)
    assert song["song"]["playCount"] == 1
    frequent = await sub.json("getAlbumList2", type="frequent", size=5)
    assert [a["id"] for a in frequent["albumList2"]["album"]] == [f"as-{published['artist_id']}"]
    recent = await sub.json("getAlbumList", type="recent", size=5)
    assert recent["albumList"]["album"][0]["id"] == f"as-{published['artist_id']}"
    await sub.error("scrobble", 10)
    await sub.error("scrobble", 70, id=f"tr-{uuid.uuid4()}")


async def test_cover_art_is_generated(api, published):
    _, sub = await subsonic_user(api)
    cover = await sub.raw("getCoverArt", id=f"as-{published['artist_id']}", size=64)
    assert cover.status_code == 200 and cover.headers["content-type"] == "image/png"
    assert cover.content.startswith(b"\x89PNG\r\n\x1a\n")
    again = await sub.raw("getCoverArt", id=f"as-{published['artist_id']}", size=64)
    assert again.content == cover.content
    await sub.error("getCoverArt", 70, id="nonsense")


@pytest.fixture
async def library_seed(api, pool) -> dict:
    owner = await api.user("artist")
    return await seed(pool, owner, name=f"Lib {uuid.uuid4().hex[:6]}", albums={
        "Record": [("Opening", "Rock"), ("Closing", "Rock")], None: [("Loose", None)]})


async def test_star_unstar_starred_and_ratings(api, library_seed):
    _, sub = await subsonic_user(api)
    album_id = f"al-{library_seed['albums']['Record']}"
    artist_id = f"ar-{library_seed['artist_id']}"
    song_id = f"tr-{library_seed['tracks']['Opening']}"
    await sub.json("star", id=[song_id, f"tr-{library_seed['tracks']['Closing']}"], albumId=album_id,
                   artistId=artist_id)
    await sub.json("star", id=song_id)  # repeatable
    starred = (await sub.json("getStarred2"))["starred2"]
    assert {s["id"] for s in starred["song"]} >= {song_id}
    assert [a["id"] for a in starred["album"]] == [album_id] and [a["id"] for a in starred["artist"]] == [artist_id]
    assert all(s["starred"] for s in starred["song"])
    old = (await sub.json("getStarred"))["starred"]
    assert [a["id"] for a in old["album"]] == [album_id]
    root = await sub.xml("getStarred2")
    assert {s.get("id") for s in root.find(f"{NS}starred2").findall(f"{NS}song")} >= {song_id}
    await sub.json("unstar", id=song_id, artistId=artist_id, post=True)
    starred = (await sub.json("getStarred2"))["starred2"]
    assert song_id not in {s["id"] for s in starred["song"]} and starred["artist"] == []
    starred_list = await sub.json("getAlbumList2", type="starred", size=10)
    assert [a["id"] for a in starred_list["albumList2"]["album"]] == [album_id]

    await sub.json("setRating", id=song_id, rating=4)
    assert (await sub.json("getSong", id=song_id))["song"]["userRating"] == 4
    await sub.json("setRating", id=album_id, rating=5)
    highest = await sub.json("getAlbumList2", type="highest", size=10)
    assert highest["albumList2"]["album"][0]["id"] == album_id
    await sub.json("setRating", id=song_id, rating=0)
    assert "userRating" not in (await sub.json("getSong", id=song_id))["song"]
    await sub.error("setRating", 0, id=song_id, rating=9)
    await sub.error("setRating", 10, id=song_id)
    await sub.error("star", 10)
    await sub.error("star", 70, id=f"tr-{uuid.uuid4()}")
    # Another user sees none of it.
    _, other = await subsonic_user(api)
    assert (await other.json("getStarred2"))["starred2"]["song"] == []


async def test_playlists_round_trip_and_access_rules(api, library_seed):
    user, sub = await subsonic_user(api)
    tracks = library_seed["tracks"]
    created = await sub.json("createPlaylist", name="Road trip",
                             songId=[f"tr-{tracks['Opening']}", f"tr-{tracks['Loose']}"])
    playlist = created["playlist"]
    assert playlist["name"] == "Road trip" and playlist["songCount"] == 2 and playlist["readonly"] is False
    assert [e["title"] for e in playlist["entry"]] == ["Opening", "Loose"]
    listed = await sub.json("getPlaylists")
    assert playlist["id"] in {p["id"] for p in listed["playlists"]["playlist"]}
    await sub.json("updatePlaylist", playlistId=playlist["id"], name="Road trip 2", comment="summer",
                   public="true", songIdToAdd=f"tr-{tracks['Closing']}", songIndexToRemove=0, post=True)
    got = (await sub.json("getPlaylist", id=playlist["id"]))["playlist"]
    assert got["name"] == "Road trip 2" and got["comment"] == "summer" and got["public"] is True
    assert [e["title"] for e in got["entry"]] == ["Loose", "Closing"]
    replaced = await sub.json("createPlaylist", playlistId=playlist["id"], songId=f"tr-{tracks['Opening']}")
    assert [e["title"] for e in replaced["playlist"]["entry"]] == ["Opening"]
    root = await sub.xml("getPlaylist", id=playlist["id"])
    assert [e.get("title") for e in root.find(f"{NS}playlist").findall(f"{NS}entry")] == ["Opening"]

    _, other = await subsonic_user(api)
    readable = (await other.json("getPlaylist", id=playlist["id"]))["playlist"]  # public now
    assert readable["readonly"] is True and "@" not in readable["owner"]
    await other.error("updatePlaylist", 50, playlistId=playlist["id"], name="mine")
    await other.error("deletePlaylist", 50, id=playlist["id"])
    private = (await other.json("createPlaylist", name="Secret"))["playlist"]
    await sub.error("getPlaylist", 70, id=private["id"])  # a private playlist of someone else: not found
    await sub.error("updatePlaylist", 70, playlistId=private["id"], name="x")
    await sub.error("getPlaylists", 50, username=user["email"] + ".other")
    await sub.json("deletePlaylist", id=playlist["id"])
    await sub.error("getPlaylist", 70, id=playlist["id"])


async def test_play_queue_round_trip(api, library_seed):
    _, sub = await subsonic_user(api)
    assert (await sub.json("getPlayQueue"))["playQueue"].get("entry", []) == []
    ids = [f"tr-{library_seed['tracks'][t]}" for t in ("Closing", "Opening", "Loose")]
    await sub.json("savePlayQueue", id=ids, current=ids[1], position=42_000, post=True)
    queue = (await sub.json("getPlayQueue"))["playQueue"]
    assert [e["id"] for e in queue["entry"]] == ids
    assert queue["current"] == ids[1] and queue["position"] == 42_000 and queue["changedBy"] == "tests"
    root = await sub.xml("getPlayQueue")
    assert root.find(f"{NS}playQueue").get("current") == ids[1]
    await sub.json("savePlayQueue")
    assert (await sub.json("getPlayQueue"))["playQueue"].get("entry", []) == []


@pytest.fixture(scope="module")
def http_server(settings, pool):
    """The app on a real socket (uvicorn in a thread, its own pool): py-sonic speaks urllib, not ASGI."""
    import threading
    import time as clock

    import uvicorn

    from serve_deployments.app import create_app
    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = clock.monotonic() + 30
    while not server.started and clock.monotonic() < deadline:
        clock.sleep(0.05)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(timeout=10)


async def test_a_real_subsonic_client_library_browses_searches_and_streams(api, published, library_seed, http_server,
                                                                           tmp_path):
    """py-sonic (PyPI), which POSTs forms by default, from getArtists down to stream; playlists and stars."""
    import asyncio

    import libsonic

    user = await api.user()
    from tests.subsonic_support import app_password

    password = (await app_password(api, user, "py-sonic"))["password"]

    def session() -> dict:
        conn = libsonic.Connection("http://127.0.0.1", user["email"], password, port=http_server, appName="pytest")
        assert conn.ping()
        indexes = conn.getArtists()["artists"]["index"]
        artist = next(a for i in indexes for a in i["artist"] if a["name"] == published["name"])
        album = conn.getArtist(artist["id"])["artist"]["album"][0]
        song = conn.getAlbum(album["id"])["album"]["song"][0]
        assert conn.getSong(song["id"])["song"]["title"] == "Tone poem"
        audio_bytes = conn.stream(song["id"], maxBitRate=128).read()
        found = conn.search3(library_seed_name, songCount=10)["searchResult3"]
        playlist = conn.createPlaylist(name="From py-sonic", songIds=[song["id"]])
        conn.star(sids=[song["id"]])
        starred = conn.getStarred2()["starred2"]
        mine = conn.getPlaylists()["playlists"]["playlist"]
        # legacyAuth sends p=enc:<hex> (py-sonic 1.2.0's useGET is broken: it names Python 2's urllib2).
        legacy = libsonic.Connection("http://127.0.0.1", user["email"], password, port=http_server,
                                     appName="pytest", legacyAuth=True)
        assert legacy.ping()
        return {"audio": audio_bytes, "found": found, "playlist": playlist, "starred": starred, "mine": mine,
                "song": song}

    library_seed_name = "Opening"
    result = await asyncio.to_thread(session)
    (tmp_path / "pysonic.mp3").write_bytes(result["audio"])
    assert abs(float(probe(tmp_path / "pysonic.mp3")["duration"]) - 4.0) < 0.3
    assert "Opening" in {s["title"] for s in result["found"]["song"]}
    assert [e["id"] for e in result["playlist"]["playlist"]["entry"]] == [result["song"]["id"]]
    assert result["song"]["id"] in {s["id"] for s in result["starred"]["song"]}
    assert "From py-sonic" in {p["name"] for p in result["mine"]}


async def test_now_playing_shows_started_plays_until_something_follows(api, published, pool):
    user, sub = await subsonic_user(api)
    other_user, other = await subsonic_user(api)
    admin_user, admin = await subsonic_user(api)
    await pool.execute("UPDATE users SET role = 'admin' WHERE id = $1", uuid.UUID(admin_user["id"]))
    song_id = f"tr-{published['track_id']}"
    assert (await sub.json("getNowPlaying"))["nowPlaying"].get("entry", []) == []
    await sub.json("scrobble", id=song_id, submission="false")
    (entry,) = (await sub.json("getNowPlaying"))["nowPlaying"]["entry"]
    assert entry["id"] == song_id and entry["username"] == user["email"]
    assert entry["minutesAgo"] == 0 and entry["playerId"] == 0 and entry["title"] == "Tone poem"
    root = await sub.xml("getNowPlaying")
    (xml_entry,) = root.find(f"{NS}nowPlaying").findall(f"{NS}entry")
    assert xml_entry.get("id") == song_id and xml_entry.get("username") == user["email"]
    # usernames are e-mail addresses: another listener does not see this play; an admin does
    mine = (await other.json("getNowPlaying"))["nowPlaying"].get("entry", [])
    assert all(e["username"] != user["email"] for e in mine)
    everyone = (await admin.json("getNowPlaying"))["nowPlaying"]["entry"]
    assert user["email"] in {e["username"] for e in everyone}
    assert other_user["email"] not in {e["username"] for e in everyone}
    await sub.json("scrobble", id=song_id)  # the completed play ends "now playing"
    assert (await sub.json("getNowPlaying"))["nowPlaying"].get("entry", []) == []


async def test_bookmarks_per_user_on_visible_songs(api, pool, library_seed):
    _, sub = await subsonic_user(api)
    _, other = await subsonic_user(api)
    opening, closing = (f"tr-{library_seed['tracks'][t]}" for t in ("Opening", "Closing"))
    assert (await sub.json("getBookmarks"))["bookmarks"].get("bookmark", []) == []
    await sub.json("createBookmark", id=opening, position=61_000, comment="chorus")
    await sub.json("createBookmark", id=closing, position=5_000, post=True)
    await sub.json("createBookmark", id=opening, position=62_500, comment="after the chorus")  # replaces
    marks = (await sub.json("getBookmarks"))["bookmarks"]["bookmark"]
    assert [(m["entry"]["id"], m["position"], m.get("comment")) for m in marks] == [
        (opening, 62_500, "after the chorus"), (closing, 5_000, None)]
    assert marks[0]["username"] == sub.username
    root = await sub.xml("getBookmarks")
    assert [b.get("position") for b in root.find(f"{NS}bookmarks").findall(f"{NS}bookmark")] == ["62500", "5000"]
    assert (await other.json("getBookmarks"))["bookmarks"].get("bookmark", []) == []
    await other.json("deleteBookmark", id=opening)  # another user's delete leaves this one alone
    assert len((await sub.json("getBookmarks"))["bookmarks"]["bookmark"]) == 2
    await sub.json("deleteBookmark", id=opening)
    marks = (await sub.json("getBookmarks"))["bookmarks"]["bookmark"]
    assert [m["entry"]["id"] for m in marks] == [closing]
    owner = await api.user("artist")
    hidden = await seed(pool, owner, name=f"Hidden {uuid.uuid4().hex[:6]}", albums={"Wip": [("Draft", None)]},
                        status="processing")
    await sub.error("createBookmark", 70, id=f"tr-{hidden['tracks']['Draft']}", position=1)
    await sub.error("createBookmark", 70, id=f"tr-{uuid.uuid4()}", position=1)
    await sub.error("createBookmark", 10, id=opening)
    await sub.error("createBookmark", 10, position=1)
    await sub.error("createBookmark", 0, id=opening, position="soon")
    await sub.error("deleteBookmark", 10)


async def test_play_queue_by_index_keeps_repeated_songs_apart(api, library_seed):
    _, sub = await subsonic_user(api)
    extensions = (await sub.json("getOpenSubsonicExtensions", auth="none"))["openSubsonicExtensions"]
    assert {"name": "indexBasedQueue", "versions": [1]} in extensions
    empty = (await sub.json("getPlayQueueByIndex"))["playQueueByIndex"]
    assert empty.get("entry", []) == [] and "currentIndex" not in empty
    ids = [f"tr-{library_seed['tracks'][t]}" for t in ("Opening", "Closing", "Opening")]
    await sub.json("savePlayQueueByIndex", id=ids, currentIndex=2, position=7_000, post=True)
    queue = (await sub.json("getPlayQueueByIndex"))["playQueueByIndex"]
    assert [e["id"] for e in queue["entry"]] == ids
    assert queue["currentIndex"] == 2 and queue["position"] == 7_000 and queue["changedBy"] == "tests"
    root = await sub.xml("getPlayQueueByIndex")
    assert root.find(f"{NS}playQueueByIndex").get("currentIndex") == "2"
    # the same storage as getPlayQueue: its current song, and a queue saved by id read by index
    assert (await sub.json("getPlayQueue"))["playQueue"]["current"] == ids[2]
    await sub.json("savePlayQueue", id=ids, current=ids[1])
    assert (await sub.json("getPlayQueueByIndex"))["playQueueByIndex"]["currentIndex"] == 1
    await sub.error("savePlayQueueByIndex", 10, id=ids)
    await sub.error("savePlayQueueByIndex", 0, id=ids, currentIndex=3)
    await sub.error("savePlayQueueByIndex", 0, id=ids, currentIndex=-1)
    await sub.json("savePlayQueueByIndex")
    assert (await sub.json("getPlayQueueByIndex"))["playQueueByIndex"].get("entry", []) == []


async def test_lyrics_answer_the_empty_forms(api, library_seed):
    """No lyrics are stored: the spec's empty answers, not errors."""
    _, sub = await subsonic_user(api)
    extensions = (await sub.json("getOpenSubsonicExtensions", auth="none"))["openSubsonicExtensions"]
    assert {"name": "songLyrics", "versions": [1]} in extensions
    lyrics = (await sub.json("getLyrics", artist="Lib", title="Opening"))["lyrics"]
    assert lyrics["value"] == ""
    root = await sub.xml("getLyrics")
    assert root.find(f"{NS}lyrics") is not None
    song_id = f"tr-{library_seed['tracks']['Opening']}"
    listed = (await sub.json("getLyricsBySongId", id=song_id))["lyricsList"]
    assert listed.get("structuredLyrics", []) == []
    assert (await sub.xml("getLyricsBySongId", id=song_id)).find(f"{NS}lyricsList") is not None
    await sub.error("getLyricsBySongId", 70, id=f"tr-{uuid.uuid4()}")
    await sub.error("getLyricsBySongId", 10)
