"""The content model: tracks nobody played are recommended by their sound (rendered audio, analysed by
the transcoding job's own ``analyse``), on real PostgreSQL and Ray shards."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from accounts.model import Principal, Role
from catalog import artists, tracks
from ml import content, recommend, sound_catalogue, training
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
    artist = await artists.create_artist(pool, who, name=f"sound {uuid.uuid4().hex[:6]}")
    made: dict[str, list[str]] = {}
    for style, analyses in sounds.items():
        made[style] = []
        for i, analysis in enumerate(analyses[:7]):
            track = await tracks.create_track(pool, who, title=f"{style} {i}", artist_id=artist["id"], album_id=None,
                                              genre=None, duration_s=200.0, status="ready")
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
    result = await training.train_version(pool, object_store(settings), settings, version)
    assert result["content_model"] and result["sound_only_tracks"] >= 4

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
