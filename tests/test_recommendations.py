"""Recommendations on real PostgreSQL, Redis and Ray: signals from plays, saves and playlist adds into
``interactions``; a model trained by a Ray task answering the API; fold-in; the feed's filters."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from accounts.model import Principal, Role
from catalog import artists, tracks
from ml import interactions, signals
from verseflow.events.consumer import Consumer
from verseflow.events.relay import OutboxRelay


@pytest.fixture
def isolated(settings):
    """Settings with a stream of this test's own and short blocking reads."""
    return settings.model_copy(update={"events_stream": f"events-{uuid.uuid4().hex[:8]}", "consumer_block_ms": 10})


async def drain(pool, redis, settings) -> None:
    """Publish the outbox and let the ``ml.interactions`` group handle everything published."""
    await OutboxRelay(pool, redis, settings).publish_pending()
    consumer = Consumer(pool, redis, settings, group=interactions.GROUP, handlers=interactions.handlers(settings),
                        batch_size=500)
    while await consumer.process_once():
        pass


async def catalogue(pool, owner: dict, genre: str, count: int, duration_s: float = 200.0) -> list[str]:
    """``count`` published tracks of one genre by a new artist of ``owner``."""
    who = Principal(uuid.UUID(owner["id"]), Role.ARTIST)
    artist = await artists.create_artist(pool, who, name=f"{genre} {uuid.uuid4().hex[:6]}")
    return [str((await tracks.create_track(pool, who, title=f"{genre} {i}", artist_id=artist["id"], album_id=None,
                                           genre=genre, duration_s=duration_s, status="ready"))["id"])
            for i in range(count)]


async def play(api, user: dict, track_id: str, *events: tuple[str, int]) -> str:
    play_id = str(uuid.uuid4())
    for event, position_ms in events:
        response = await api.http.post("/v1/plays", headers=user["headers"], json={
            "track_id": track_id, "play_id": play_id, "event": event, "position_ms": position_ms})
        assert response.status_code == 202, response.text
    return play_id


async def row(pool, user: dict, track_id: str):
    return await pool.fetchrow("SELECT * FROM interactions WHERE user_id = $1 AND track_id = $2",
                               uuid.UUID(user["id"]), uuid.UUID(track_id))


def test_skip_threshold_and_decay(settings):
    assert signals.ended_state(29_000, 300.0, settings) == "skip"       # under 30 s of a long track
    assert signals.ended_state(31_000, 300.0, settings) == "partial"
    assert signals.ended_state(11_000, 40.0, settings) == "partial"     # 25 % of a 40 s sketch comes first
    assert signals.ended_state(9_000, 40.0, settings) == "skip"
    partial = signals.evidence("partial", 100_000, 200.0, settings)
    assert 0 < partial.positive < signals.evidence("complete", 200_000, 200.0, settings).positive
    now = datetime.now(UTC)
    assert signals.decay(now - timedelta(days=settings.rec_half_life_days), now,
                         settings.rec_half_life_days) == pytest.approx(0.5)
    assert signals.confidence(0.0, 1.0, False, settings) < 0 < signals.confidence(0.0, 1.0, True, settings)


async def test_plays_saves_and_playlist_adds_become_interactions(api, pool, redis, isolated):
    owner, listener = await api.user("artist"), await api.user()
    done, skipped, partial, restarted, saved, listed = await catalogue(pool, owner, "rock", 6)

    await play(api, listener, done, ("start", 0), ("progress", 100_000), ("complete", 200_000))
    await play(api, listener, skipped, ("start", 0), ("progress", 10_000))
    await play(api, listener, partial, ("start", 0), ("progress", 120_000))   # ends when the next one starts
    await play(api, listener, restarted, ("start", 0))
    await play(api, listener, restarted, ("start", 0), ("complete", 200_000))  # a restart: the first is dropped
    assert (await api.http.put(f"/v1/me/library/tracks/{saved}", headers=listener["headers"])).json() == \
        {"saved": True, "changed": True}
    again = await api.http.put(f"/v1/me/library/tracks/{saved}", headers=listener["headers"])
    assert again.json()["changed"] is False
    playlist = (await api.http.post("/v1/playlists", json={"name": "mine"}, headers=listener["headers"])).json()
    added = await api.http.post(f"/v1/playlists/{playlist['id']}/tracks", json={"track_id": listed},
                                headers=listener["headers"])
    assert added.status_code in (200, 201), added.text
    other = await api.user()
    public = (await api.http.post("/v1/playlists", json={"name": "shared", "public": True},
                                  headers=other["headers"])).json()
    for track_id in (done, listed):
        await api.http.post(f"/v1/playlists/{public['id']}/tracks", json={"track_id": track_id},
                            headers=other["headers"])
    followed = await api.http.put(f"/v1/playlists/{public['id']}/follow", headers=listener["headers"])
    assert followed.status_code in (200, 204), followed.text
    await drain(pool, redis, isolated)

    assert (await row(pool, listener, listed))["follows"] == 1
    assert (r := await row(pool, listener, done))["completes"] == 1 and r["follows"] == 1
    assert r["positive"] == pytest.approx(1.0 + 0.5, rel=1e-3)
    assert (r := await row(pool, listener, skipped))["skips"] == 1 and r["negative"] > 0 and r["positive"] == 0
    assert (r := await row(pool, listener, partial))["partials"] == 1 and 0 < r["positive"] < 1
    assert (r := await row(pool, listener, restarted))["completes"] == 1 and r["skips"] == 0 and r["negative"] == 0
    assert (await row(pool, listener, saved))["saved"] is True
    assert (r := await row(pool, listener, listed))["playlist_adds"] == 1 and r["positive"] > 0

    library = (await api.http.get("/v1/me/library/tracks", headers=listener["headers"])).json()
    assert [t["id"] for t in library] == [saved]
    assert (await api.http.delete(f"/v1/me/library/tracks/{saved}", headers=listener["headers"])).json() == \
        {"saved": False, "changed": True}
    missing = await api.http.put(f"/v1/me/library/tracks/{uuid.uuid4()}", headers=listener["headers"])
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    await drain(pool, redis, isolated)
    assert (await row(pool, listener, saved))["saved"] is False


async def test_a_late_complete_turns_a_skip_into_a_play(api, pool, redis, isolated):
    owner, listener = await api.user("artist"), await api.user()
    first, second = await catalogue(pool, owner, "folk", 2)
    first_play = await play(api, listener, first, ("start", 0))
    await play(api, listener, second, ("start", 0))                    # ends the first: a skip for now
    await drain(pool, redis, isolated)
    assert (await row(pool, listener, first))["skips"] == 1
    response = await api.http.post("/v1/plays", headers=listener["headers"], json={
        "track_id": first, "play_id": first_play, "event": "complete", "position_ms": 200_000})
    assert response.status_code == 202
    await drain(pool, redis, isolated)
    r = await row(pool, listener, first)
    assert (r["skips"], r["completes"], r["negative"]) == (0, 1, 0) and r["positive"] > 0


async def wait_ready(api, admin: dict, version: int) -> dict:
    for _ in range(600):
        info = (await api.http.get(f"/v1/admin/recommendations/models/{version}", headers=admin["headers"])).json()
        if info["state"] != "training":
            return info
        await asyncio.sleep(0.1)
    raise AssertionError(f"version {version} still training")


async def test_trained_model_answers_with_fold_in_and_filters(ray_cluster, api, pool, redis, isolated):
    owner, tag = await api.user("artist"), uuid.uuid4().hex[:6]
    rock_genre, jazz_genre = f"rock-{tag}", f"jazz-{tag}"     # apart from other tests' tracks
    rock = await catalogue(pool, owner, rock_genre, 8)
    jazz = await catalogue(pool, owner, jazz_genre, 8)
    for fan in range(6):
        listener, shelf = await api.user(), (rock if fan % 2 else jazz)
        for track_id in shelf[fan // 2: fan // 2 + 6]:
            await play(api, listener, track_id, ("start", 0), ("complete", 200_000))
    # An artist who listens to rock and owns one of the rock tracks everyone plays.
    listener = await api.user("artist")
    own_artist = await artists.create_artist(pool, Principal(uuid.UUID(listener["id"]), Role.ARTIST), name="Mine")
    await pool.execute("UPDATE tracks SET artist_id = $1 WHERE id = $2", own_artist["id"], uuid.UUID(rock[3]))
    for track_id in rock[:2]:
        await play(api, listener, track_id, ("start", 0), ("complete", 200_000))
    await play(api, listener, rock[2], ("start", 0))   # skipped by the next start
    await play(api, listener, rock[1], ("start", 0), ("complete", 200_000))
    await drain(pool, redis, isolated)

    listener_role = await api.user()
    admin = await api.user()
    await pool.execute("UPDATE users SET role = 'admin' WHERE id = $1", uuid.UUID(admin["id"]))
    token = await api.http.post("/v1/auth/token", data={"username": admin["email"], "password": admin["password"]})
    admin["headers"] = {"Authorization": f"Bearer {token.json()['access_token']}"}
    refused = await api.http.post("/v1/admin/recommendations/train", headers=listener_role["headers"])
    assert refused.status_code == 403
    started = await api.http.post("/v1/admin/recommendations/train", headers=admin["headers"])
    assert started.status_code == 202, started.text
    version = started.json()["version"]
    info = await wait_ready(api, admin, version)
    assert info["state"] == "ready", info

    # Not ready or deleted after training: filtered at query time.
    await pool.execute("UPDATE tracks SET status = 'processing' WHERE id = $1", uuid.UUID(rock[4]))
    await pool.execute("DELETE FROM tracks WHERE id = $1", uuid.UUID(rock[5]))

    feed = await api.http.get("/v1/me/recommendations?limit=20", headers=listener["headers"])
    assert feed.status_code == 200, feed.text
    body = feed.json()
    assert body["model_version"] >= version
    got = [item["track"]["id"] for item in body["items"]]
    assert not set(got) & {rock[0], rock[1], rock[2], rock[3], rock[4], rock[5]}   # played, skipped, own, hidden
    ours = [item for item in body["items"] if item["track"]["id"] in rock + jazz]  # other tests' tracks aside
    assert ours[0]["track"]["id"] in rock[6:], body
    assert ours[0]["reason"].startswith(f"because you played {rock_genre} "), body

    # Fold-in: a listener unknown to the model gets jazz as soon as their jazz plays are handled.
    newcomer = await api.user()
    before = (await api.http.get("/v1/me/recommendations?limit=3", headers=newcomer["headers"])).json()
    assert all(item["reason"].startswith("popular") for item in before["items"])
    for track_id in jazz[:2]:
        await play(api, newcomer, track_id, ("start", 0), ("complete", 200_000))
    await drain(pool, redis, isolated)
    after = (await api.http.get("/v1/me/recommendations?limit=20", headers=newcomer["headers"])).json()
    ours = [item for item in after["items"] if item["track"]["id"] in rock + jazz]
    assert [item["track"]["genre"] for item in ours[:3]] == [jazz_genre] * 3
    assert not {item["track"]["id"] for item in after["items"]} & set(jazz[:2])

    similar = (await api.http.get(f"/v1/tracks/{jazz[2]}/similar?limit=20")).json()
    ours = [item for item in similar["items"] if item["track"]["id"] in rock + jazz]
    assert [item["track"]["genre"] for item in ours[:3]] == [jazz_genre] * 3
    assert jazz[2] not in {item["track"]["id"] for item in similar["items"]}
    too_many = await api.http.get(f"/v1/tracks/{jazz[2]}/similar?limit=100000")
    assert too_many.status_code == 422 and too_many.headers["content-type"].startswith("application/problem+json")

    # A new listener the model cannot place (no plays; saved only a track newer than the model): their
    # saved track, then popular picks of its genre.
    saver, (late,) = await api.user(), await catalogue(pool, owner, jazz_genre, 1)
    assert (await api.http.put(f"/v1/me/library/tracks/{late}", headers=saver["headers"])).status_code == 200
    await drain(pool, redis, isolated)
    cold = (await api.http.get("/v1/me/recommendations?limit=3", headers=saver["headers"])).json()["items"]
    assert cold[0]["track"]["id"] == late and cold[0]["reason"] == "in your library"
    assert [item["reason"] for item in cold[1:]] == [f"popular in {jazz_genre}"] * 2


async def test_trending_counts_listener_growth_not_plays(api, pool):
    """A fixture with known answers (hourly listeners written directly; the consumer's part is tested above)."""
    owner, users = await api.user("artist"), [await api.user() for _ in range(11)]
    g1, g2 = f"trend-{uuid.uuid4().hex[:6]}", f"trend-{uuid.uuid4().hex[:6]}"
    a, b, c, d, e = await catalogue(pool, owner, g1, 5)
    (f,) = await catalogue(pool, owner, g2, 1)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    current, previous = now - timedelta(hours=2), now - timedelta(hours=30)
    listens = ([(a, previous, u) for u in users[:5]] + [(a, current, u) for u in users[5:11]]
               + [(b, current, u) for u in users[:3]]
               + [(c, now - timedelta(hours=h), users[0]) for h in range(1, 21)]     # one listener replaying
               + [(d, previous, u) for u in users[:10]] + [(d, current, u) for u in users[:4]]
               + [(e, previous, users[0])] + [(e, current, u) for u in users[1:5]]
               + [(f, current, u) for u in users[:4]])
    await pool.executemany("INSERT INTO track_listens (track_id, hour, user_id) VALUES ($1, $2, $3)",
                           [(uuid.UUID(t), hour, uuid.UUID(u["id"])) for t, hour, u in listens])

    day = (await api.http.get(f"/v1/charts/trending?window=24h&genre={g1}")).json()
    assert [i["track"]["id"] for i in day["items"]] == [b, e, a]
    assert [(i["listeners"], i["previous_listeners"]) for i in day["items"]] == [(3, 0), (4, 1), (6, 5)]
    assert day["items"][1]["score"] == pytest.approx(3 / 2 ** 0.5, rel=1e-4)
    week = (await api.http.get(f"/v1/charts/trending?window=7d&genre={g1}")).json()
    assert [i["track"]["id"] for i in week["items"]] == [a, d, e, b]
    other = (await api.http.get(f"/v1/charts/trending?genre={g2}")).json()
    assert [i["track"]["id"] for i in other["items"]] == [f]
    bad = await api.http.get("/v1/charts/trending?window=1h")
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


async def test_replays_by_one_listener_count_once(api, pool, redis, isolated):
    owner, listener = await api.user("artist"), await api.user()
    (track,) = await catalogue(pool, owner, "loop", 1)
    for _ in range(5):
        await play(api, listener, track, ("start", 0), ("complete", 200_000))
    await drain(pool, redis, isolated)
    assert (await row(pool, listener, track))["completes"] == 5
    assert await pool.fetchval("SELECT count(DISTINCT user_id) FROM track_listens WHERE track_id = $1",
                               uuid.UUID(track)) == 1


async def test_cli_trains_a_version_as_a_ray_task(ray_cluster, api, pool, redis, isolated, capsys):
    from verseflow import cli

    owner, listener = await api.user("artist"), await api.user()
    (track,) = await catalogue(pool, owner, "cli", 1)
    await play(api, listener, track, ("start", 0), ("complete", 200_000))
    await drain(pool, redis, isolated)
    assert await asyncio.to_thread(cli.main, ["recs", "train"]) == 0
    version = int(capsys.readouterr().out.split("version ")[1].split()[0])
    row = await pool.fetchrow("SELECT state, trigger, artefact FROM rec_models WHERE version = $1", version)
    assert (row["state"], row["trigger"]) == ("ready", "cli") and row["artefact"].endswith(".npz")


async def test_a_play_left_open_is_ended_by_the_sweep(api, pool, redis, isolated, settings):
    owner, listener = await api.user("artist"), await api.user()
    (track,) = await catalogue(pool, owner, "quiet", 1)
    await play(api, listener, track, ("start", 0), ("progress", 5_000))
    await drain(pool, redis, isolated)
    assert await row(pool, listener, track) is None                    # open: no evidence yet
    await pool.execute("UPDATE play_signals SET started_at = now() - interval '3 hours' WHERE user_id = $1",
                       uuid.UUID(listener["id"]))
    assert await interactions.end_stale_plays(pool, settings) >= 1
    assert (await row(pool, listener, track))["skips"] == 1


async def test_a_subsonic_star_is_a_saved_track(api, pool, redis, isolated):
    from subsonic import ids
    from tests.subsonic_support import subsonic_user

    owner = await api.user("artist")
    (track,) = await catalogue(pool, owner, "starred", 1)
    user, sonic = await subsonic_user(api)
    await sonic.json("star", id=ids.encode("track", track))
    library = (await api.http.get("/v1/me/library/tracks", headers=user["headers"])).json()
    assert [t["id"] for t in library] == [track]
    await drain(pool, redis, isolated)
    assert (await row(pool, user, track))["saved"] is True
