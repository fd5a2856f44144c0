"""``getSimilarSongs(2)``, ``getArtistInfo(2)`` and ``getAlbumInfo(2)`` through the real app: a small
model trained in-process (``ml.training.train_version``, without Ray) on real plays, and the fallback
for tracks no model knows (popular in the genre, as ``GET /v1/tracks/{id}/similar`` answers)."""

from __future__ import annotations

import uuid

import pytest

from ml import training
from tests.subsonic_support import NS, seed, subsonic_user
from tests.test_recommendations import drain, play
from verseflow.storage import object_store


@pytest.fixture
def isolated(settings):
    """Settings with a stream of this test's own and short blocking reads."""
    return settings.model_copy(update={"events_stream": f"events-{uuid.uuid4().hex[:8]}", "consumer_block_ms": 10})


async def listen(api, tracks: list[str], fans: int) -> None:
    """``fans`` new listeners, each completing a sliding window of six of ``tracks``."""
    for fan in range(fans):
        listener = await api.user()
        for track_id in tracks[fan: fan + 6]:
            await play(api, listener, track_id, ("start", 0), ("complete", 61_000))


def song_ids(answer: dict, key: str) -> list[str]:
    return [s["id"].removeprefix("tr-") for s in answer[key].get("song", [])]


async def test_without_a_model_similar_is_popular_in_the_genre(api, pool, redis, isolated):
    owner, genre = await api.user("artist"), f"folk-{uuid.uuid4().hex[:6]}"
    quiet = await seed(pool, owner, name=f"Quiet {genre}", albums={None: [("q0", genre), ("q1", genre)]})
    loud = await seed(pool, owner, name=f"Loud {genre}", albums={None: [(f"l{i}", genre) for i in range(3)]})
    lone = await seed(pool, owner, name=f"Lone {genre}", albums={None: [("untagged", None)]})
    loud_tracks = [str(t) for t in loud["tracks"].values()]
    for _ in range(2):
        listener = await api.user()
        for track_id in loud_tracks:
            await play(api, listener, track_id, ("start", 0), ("complete", 61_000))
    await drain(pool, redis, isolated)
    _, sub = await subsonic_user(api)

    by_song = await sub.json("getSimilarSongs", id=f"tr-{quiet['tracks']['q0']}")
    assert set(song_ids(by_song, "similarSongs")) == set(loud_tracks)
    assert by_song["similarSongs"]["song"][0]["genre"] == genre and by_song["similarSongs"]["song"][0]["isDir"] is False
    by_artist = await sub.json("getSimilarSongs2", id=f"ar-{quiet['artist_id']}")
    assert set(song_ids(by_artist, "similarSongs2")) == set(loud_tracks)
    info = await sub.json("getArtistInfo2", id=f"ar-{quiet['artist_id']}")
    assert [a["id"] for a in info["artistInfo2"]["similarArtist"]] == [f"ar-{loud['artist_id']}"]
    # No genre and no model: nothing to go on, an empty list (never an error).
    nothing = await sub.json("getSimilarSongs", id=f"tr-{lone['tracks']['untagged']}")
    assert nothing["similarSongs"].get("song", []) == []
    assert (await sub.json("getArtistInfo", id=f"ar-{lone['artist_id']}"))["artistInfo"].get("similarArtist", []) == []


async def test_similar_songs_and_artists_from_a_trained_model(api, pool, redis, isolated, settings):
    owner, tag = await api.user("artist"), uuid.uuid4().hex[:6]
    rock, jazz = f"rock-{tag}", f"jazz-{tag}"   # apart from other tests' tracks
    first = await seed(pool, owner, name=f"First {tag}",
                       albums={"Rock Album": [(f"a{i}", rock) for i in range(3)], None: [("a-single", rock)]})
    second = await seed(pool, owner, name=f"Second {tag}", albums={None: [(f"b{i}", rock) for i in range(4)]})
    third = await seed(pool, owner, name=f"Third {tag}", albums={None: [(f"c{i}", jazz) for i in range(8)]})
    first_tracks = [str(t) for t in first["tracks"].values()]
    second_tracks = [str(t) for t in second["tracks"].values()]
    rock_tracks, jazz_tracks = first_tracks + second_tracks, [str(t) for t in third["tracks"].values()]
    await listen(api, rock_tracks, 3)
    await listen(api, jazz_tracks, 3)
    await drain(pool, redis, isolated)
    version = await training.request_version(pool, "test")
    assert (await training.train_version(pool, object_store(settings), settings, version))["state"] == "ready"
    ours = set(rock_tracks + jazz_tracks)
    _, sub = await subsonic_user(api)

    seed_song = first_tracks[0]
    answer = await sub.json("getSimilarSongs", id=f"tr-{seed_song}", count=20)
    got = [t for t in song_ids(answer, "similarSongs") if t in ours]   # other tests' tracks aside
    assert seed_song not in got and set(got[:3]) <= set(rock_tracks), got
    assert len((await sub.json("getSimilarSongs", id=f"tr-{seed_song}", count=2))["similarSongs"]["song"]) == 2

    album = first["albums"]["Rock Album"]
    album_tracks = {str(first["tracks"][f"a{i}"]) for i in range(3)}
    answer = await sub.json("getSimilarSongs", id=f"al-{album}")
    got = [t for t in song_ids(answer, "similarSongs") if t in ours]
    assert not album_tracks & set(got) and got[0] in rock_tracks, got

    # The artist's similar songs leave out all of its own tracks; a track no longer ready is gone.
    await pool.execute("UPDATE tracks SET status = 'processing' WHERE id = $1", uuid.UUID(second_tracks[3]))
    answer = await sub.json("getSimilarSongs2", id=f"ar-{first['artist_id']}")
    got = [t for t in song_ids(answer, "similarSongs2") if t in ours]
    assert got[:3] == [t for t in got if t in second_tracks] and len(got[:3]) == 3, got
    assert not set(first_tracks) & set(got) and second_tracks[3] not in got
    root = await sub.xml("getSimilarSongs2", id=f"ar-{first['artist_id']}")
    assert {s.get("id") for s in root.find(f"{NS}similarSongs2").findall(f"{NS}song")} >= {f"tr-{t}" for t in got}

    info = await sub.json("getArtistInfo2", id=f"ar-{first['artist_id']}", count=50, includeNotPresent="true")
    artists = [a["id"] for a in info["artistInfo2"]["similarArtist"]]
    assert f"ar-{first['artist_id']}" not in artists
    assert [a for a in artists if a in (f"ar-{second['artist_id']}", f"ar-{third['artist_id']}")][0] == \
        f"ar-{second['artist_id']}", artists
    via_song = await sub.json("getArtistInfo", id=f"tr-{seed_song}", count=50)
    assert [a["id"] for a in via_song["artistInfo"]["similarArtist"]] == artists
    assert (await sub.json("getAlbumInfo", id=f"al-{album}"))["albumInfo"] == {}
    assert (await sub.json("getAlbumInfo2", id=f"al-{album}"))["albumInfo"] == {}

    await sub.error("getSimilarSongs", 10)
    await sub.error("getSimilarSongs", 70, id=f"ar-{uuid.uuid4()}")
    await sub.error("getSimilarSongs", 70, id=f"pl-{uuid.uuid4()}")
    await sub.error("getSimilarSongs2", 70, id=f"al-{album}")
    await sub.error("getArtistInfo2", 70, id=f"ar-{uuid.uuid4()}")
    await sub.error("getAlbumInfo", 70, id=f"al-{uuid.uuid4()}")
    await sub.error("getSimilarSongs", 70, id=f"tr-{second_tracks[3]}")   # not ready: not a song a client sees
