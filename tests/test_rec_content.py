"""The content model: tracks nobody played are recommended by their sound (rendered audio, analysed by
the transcoding job's own ``analyse``), on real PostgreSQL and Ray shards."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from accounts.model import Principal, Role
from catalog import artists, tracks
from ml import collaborative, content, recommend, sound_catalogue, training
from ml.content_network import ContentNetwork
from verseflow.storage import object_store


def test_content_map_and_blend():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 12)).astype(np.float32)
    truth = rng.normal(size=(12, 4)).astype(np.float32)
    fitted = content.ContentMap.fit(features * 3 + 5, features @ truth, regularization=0.01)
    assert np.allclose(fitted.predict(features * 3 + 5), features @ truth, atol=1e-2)
    weights = content.blend_weight(np.array([0.0, 5.0, 95.0]), 5.0)
    assert weights.tolist() == pytest.approx([0.0, 0.5, 0.95])
    blended = content.blend(np.ones((3, 2)), np.zeros((3, 2)), np.array([0.0, 5.0, 95.0]), 5.0)
    assert blended[:, 0].tolist() == pytest.approx([0.0, 0.5, 0.95])   # score = w·collab + (1−w)·content
    assert content.content_vector(None) is None and content.content_vector({"genre": {}}) is None


@pytest.fixture(scope="module")
def sounds():
    """Eight analysed clips each of two styles far apart in sound."""
    return {style: [sound_catalogue.analysed_clip(style, 70_000 + i, seconds=6.0) for i in range(8)]
            for style in ("rock", "ambient")}


async def train_on_own_data(pool, settings, version: int, listeners: set[str], track_ids: list[str]):
    """Train and publish ``version`` as ``training.train_version`` does, from this test's listeners and
    tracks only. The suite shares one database, and with the suite's two factors other tests' tastes
    (and their analysed uploads, which the content model would also fit) crowd the two styles here
    into the same directions: what this test checks would then depend on which tests ran before it."""
    entries = [e for e in await training.training_entries(pool, settings) if e[0] in listeners]
    sounds = {t: v for t, v in (await training.content_vectors(pool)).items() if t in set(track_ids)}
    model = collaborative.train(entries, settings, version=version, content=sounds)
    await training.publish_version(pool, object_store(settings), model)
    return model


@pytest.fixture
def fresh_cache():
    """A model cache of this test's own, so the version it trains is looked up at once."""
    saved, recommend._cache = recommend._cache, recommend.ModelCache()
    yield
    recommend._cache = saved


async def test_a_track_nobody_played_is_recommended_by_its_sound(ray_cluster, api, pool, settings, sounds,
                                                                  fresh_cache):
    owner = await api.user("artist")
    who = Principal(uuid.UUID(owner["id"]), Role.ARTIST)
    pair = [await artists.create_artist(pool, who, name=f"sound {uuid.uuid4().hex[:6]}") for _ in range(2)]
    artist = pair[0]
    made: dict[str, list[str]] = {}
    for style, analyses in sounds.items():
        made[style] = []
        for i, analysis in enumerate(analyses[:7]):
            track = await tracks.create_track(pool, who, title=f"{style} {i}", artist_id=pair[i % 2]["id"],
                                              album_id=None, genre=None, duration_s=200.0, status="ready")
            await pool.execute("UPDATE tracks SET analysis = $2 WHERE id = $1", track["id"], analysis)
            made[style].append(str(track["id"]))
    fans = {style: [await api.user() for _ in range(4)] for style in sounds}
    for style, users in fans.items():
        for user in users:     # tracks 0..4 are played; 5 and 6 nobody plays
            await pool.executemany(
                "INSERT INTO interactions (user_id, track_id, positive, completes, decayed_at) "
                "VALUES ($1, $2, 1, 1, now())",
                [(uuid.UUID(user["id"]), uuid.UUID(t)) for t in made[style][:5]])
    version = await training.request_version(pool, "test")
    listeners = {user["id"] for users in fans.values() for user in users}
    model = await train_on_own_data(pool, settings, version, listeners, made["rock"] + made["ambient"])
    assert isinstance(model.content_map, ContentNetwork)      # the network (the default) maps sound to factors
    assert int((model.evidence == 0).sum()) == 4   # rock and ambient 5, 6

    cold_rock = made["rock"][5]
    similar = (await api.http.get(f"/v1/tracks/{cold_rock}/similar?limit=100")).json()
    assert similar["model_version"] == version and similar["shards"]["complete"]
    ours = [i for i in similar["items"] if i["track"]["id"] in made["rock"] + made["ambient"]]
    assert {i["track"]["id"] for i in ours[:6]} == set(made["rock"]) - {cold_rock}
    assert ours[0]["reason"] == "sounds like rock 5"

    # An upload newer than the model: similar tracks through the content model at query time.
    late = await tracks.create_track(pool, who, title="late ambient", artist_id=artist["id"], album_id=None,
                                     genre=None, duration_s=200.0, status="ready")
    await pool.execute("UPDATE tracks SET analysis = $2 WHERE id = $1", late["id"], sounds["ambient"][7])
    similar = (await api.http.get(f"/v1/tracks/{late['id']}/similar?limit=100")).json()
    ours = [i for i in similar["items"] if i["track"]["id"] in made["rock"] + made["ambient"]]
    assert {i["track"]["id"] for i in ours[:7]} == set(made["ambient"])
    assert ours[0]["reason"] == "sounds like late ambient"

    # A rock fan's feed: the unplayed rock tracks, by their sound, before the unplayed ambient ones.
    feed = (await api.http.get("/v1/me/recommendations?limit=100", headers=fans["rock"][0]["headers"])).json()
    ours = [i for i in feed["items"] if i["track"]["id"] in made["rock"] + made["ambient"]]
    assert {i["track"]["id"] for i in ours[:2]} == set(made["rock"][5:])
    assert all(i["reason"].startswith("sounds like rock ") for i in ours[:2])

    # Radio from a rock track: every other rock track comes before any ambient one, nothing falls under the
    # similarity floor, never one artist twice in a row. (The model is trained over the whole test database,
    # where other tests' tracks and listeners also live, so an ambient track may clear the floor late in a
    # long queue; in a catalogue of only these tracks none does.)
    station = await api.http.get(f"/v1/radio?seed_track={made['rock'][0]}&limit=100",
                                 headers=fans["rock"][1]["headers"])
    assert station.status_code == 200, station.text
    queue = station.json()["items"]
    ours = [i["track"]["id"] for i in queue if i["track"]["id"] in made["rock"] + made["ambient"]]
    assert set(ours[:6]) == set(made["rock"][1:])
    assert all(i["score"] >= settings.rec_radio_min_similarity for i in queue)
    artists_in_order = [i["track"]["artist_id"] for i in queue]
    assert all(a != b for a, b in zip(artists_in_order, artists_in_order[1:], strict=False))
    assert queue[0]["track"]["artist_id"] != str(pair[0]["id"])          # the seed's artist is not next either
    assert all(i["reason"] == "radio from rock 0" for i in queue)
    unauthenticated = await api.http.get(f"/v1/radio?seed_track={made['rock'][0]}")
    assert unauthenticated.status_code == 401
    bad = await api.http.get("/v1/radio?seed_track=not-a-uuid", headers=fans["rock"][1]["headers"])
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    missing = await api.http.get(f"/v1/radio?seed_track={uuid.uuid4()}", headers=fans["rock"][1]["headers"])
    assert missing.status_code == 404


def test_radio_queue_flows_and_keeps_to_the_neighbourhood(settings):
    from ml.radio import Candidate, build_queue, tempo_distance

    def unit(*v: float) -> np.ndarray:
        x = np.asarray(v, dtype=np.float32)
        return x / np.linalg.norm(x)

    seed = Candidate("seed", "a", unit(1, 0, 0), bpm=120, lufs=-10)
    near = [Candidate("a1", "a", unit(1, 0.1, 0), bpm=120, lufs=-10),
            Candidate("b1", "b", unit(1, 0.12, 0), bpm=120, lufs=-10),
            Candidate("b2", "b", unit(1, 0.11, 0), bpm=120, lufs=-10),
            Candidate("c1", "c", unit(1, 0.1, 0.05), bpm=183, lufs=-10),    # same sound, a tempo jump
            Candidate("e1", "e", unit(1, 0.1, 0.06), bpm=61, lufs=-10)]     # half time: close in feel
    far = Candidate("far", "d", unit(0, 0, 1), bpm=120, lufs=-10)          # outside the neighbourhood
    queue = [c.track_id for c, _ in build_queue(seed, near + [far], 10, settings)]
    assert "far" not in queue and len(queue) == 5
    assert queue[0] != "a1"                                              # not the seed's artist next
    artists_in_order = ["a"] + [q[0] for q in queue]
    assert all(x != y for x, y in zip(artists_in_order, artists_in_order[1:], strict=False))
    assert queue.index("e1") < queue.index("c1")                         # the tempo jump comes later
    assert tempo_distance(61, 120) < 0.05 < tempo_distance(183, 120)


async def test_breakouts_rank_growth_against_each_artists_baseline(api, pool):
    from datetime import UTC, datetime, timedelta

    owner = await api.user("artist")
    who = Principal(uuid.UUID(owner["id"]), Role.ARTIST)
    users = [await api.user() for _ in range(12)]
    names = ["rising", "steady", "small", "quiet", "fading"]
    made = {}
    for name in names:
        artist = await artists.create_artist(pool, who, name=f"{name} {uuid.uuid4().hex[:6]}")
        track = await tracks.create_track(pool, who, title=name, artist_id=artist["id"], album_id=None,
                                          genre=None, duration_s=200.0, status="ready")
        made[name] = (str(artist["id"]), track["id"])
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    week = timedelta(days=7)
    plan = {"rising": [0, 0, 0, 6], "steady": [10, 10, 10, 12], "small": [2, 2, 2, 8], "quiet": [0, 0, 0, 4],
            "fading": [9, 9, 9, 7]}                                  # windows oldest first, current last
    rows = []
    for name, counts in plan.items():
        for age, count in zip((3, 2, 1, 0), counts, strict=True):
            hour = now - age * week - timedelta(hours=2)
            rows += [(made[name][1], hour, uuid.UUID(u["id"])) for u in users[:count]]
    await pool.executemany("INSERT INTO track_listens (track_id, hour, user_id) VALUES ($1, $2, $3)", rows)

    listener = await api.user()
    assert (await api.http.get("/v1/discovery/breakouts", headers=listener["headers"])).status_code == 403
    body = (await api.http.get("/v1/discovery/breakouts?window=7d&limit=100", headers=owner["headers"])).json()
    ours = {a for a, _ in made.values()}
    items = [i for i in body["items"] if i["artist"]["id"] in ours]
    assert [i["artist"]["id"] for i in items] == [made[n][0] for n in ("rising", "small", "steady")]
    assert [(i["listeners"], i["baseline_listeners"], i["windows"]) for i in items] == \
        [(6, 0.0, [0, 0, 0, 6]), (8, 2.0, [2, 2, 2, 8]), (12, 10.0, [10, 10, 10, 12])]
    assert items[1]["score"] == pytest.approx(6 / 3 ** 0.5, rel=1e-4)
    bad = await api.http.get("/v1/discovery/breakouts?window=1h", headers=owner["headers"])
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
