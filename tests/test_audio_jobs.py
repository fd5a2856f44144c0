"""One transcoding attempt (audio/jobs.py) run directly, without Ray: failure paths and their traces."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from accounts.model import Principal, Role
from audio import jobs, service
from audio.landmark_index import LocalCatalogue
from tests.audio_fixtures import tone, write_audio
from verseflow.storage import LocalObjectStore

RATE = 44100


@pytest.fixture
async def upload(api, pool, settings, tmp_path) -> dict[str, Any]:
    """An accepted 4 s upload (track processing, job queued) in a private store."""
    owner = await api.user("artist")
    artist = await api.http.post("/v1/artists", json={"name": "Jobs"}, headers=owner["headers"])
    who = Principal(uuid.UUID(owner["id"]), Role.ARTIST)
    store = LocalObjectStore(tmp_path / "media")
    track_id = uuid.uuid4()
    source = write_audio(tmp_path / "source.flac", tone(330.0, seconds=4.0), RATE)
    stored = store.put_file(service.source_key(track_id), source)
    fields = service.UploadFields("Jobs", uuid.UUID(artist.json()["id"]))
    await service.accept_upload(pool, store, settings, who, track_id, fields, stored)
    return {"track_id": track_id, "store": store, "user_id": who.user_id}


class Heard:
    """A notifier that records what the uploader would have been told."""

    def __init__(self) -> None:
        self.events: list[tuple[uuid.UUID, str, dict[str, Any]]] = []

    async def __call__(self, user_id: uuid.UUID, event: str, data: dict[str, Any]) -> None:
        self.events.append((user_id, event, data))


async def test_the_full_decode_can_still_refuse_and_fails_the_track(upload, pool, settings):
    """Accepted at upload time, refused by the job (here: the limit was lowered in between)."""
    heard = Heard()
    stricter = settings.model_copy(update={"track_max_duration_s": 2.0})
    outcome = await jobs.run(pool, upload["store"], stricter, upload["track_id"], heard, LocalCatalogue())
    assert outcome == "failed"
    row = await pool.fetchrow("SELECT status, error, media_prefix FROM tracks WHERE id = $1", upload["track_id"])
    assert row["status"] == "failed" and row["error"]["reason"] == "too_long" and row["media_prefix"] is None
    assert (await pool.fetchval("SELECT state FROM track_jobs WHERE track_id = $1", upload["track_id"])) == "failed"
    assert heard.events[-1][:2] == (upload["user_id"], "track.failed")
    assert heard.events[-1][2]["reason"] == "too_long"
    assert not list(upload["store"].staging_dir().iterdir())
    assert upload["store"].children(f"tracks/{upload['track_id']}") == []
    # A later attempt (a restarted actor) finds nothing to do.
    assert await jobs.run(pool, upload["store"], settings, upload["track_id"], heard, LocalCatalogue()) == "finished"


async def test_attempts_past_the_limit_fail_the_track(upload, pool, settings):
    heard = Heard()
    await pool.execute("UPDATE track_jobs SET attempts = $2 WHERE track_id = $1",
                       upload["track_id"], settings.transcode_max_attempts)
    assert await jobs.run(pool, upload["store"], settings, upload["track_id"], heard, LocalCatalogue()) == "failed"
    row = await pool.fetchrow("SELECT status, error FROM tracks WHERE id = $1", upload["track_id"])
    assert row["status"] == "failed" and row["error"]["reason"] == "job_failed"
    assert [e[1] for e in heard.events] == ["track.failed"]


async def test_leftovers_of_a_killed_attempt_are_swept_and_one_version_published(upload, pool, settings):
    store, track_id = upload["store"], upload["track_id"]
    (store.staging_dir() / f"{track_id}-v1-deadbeef").mkdir()  # a staging folder mid-write
    (store.root / "tracks" / str(track_id) / "v1-feedface").mkdir(parents=True)  # moved, never published
    heard = Heard()
    catalogue = LocalCatalogue()
    assert await jobs.run(pool, store, settings, track_id, heard, catalogue) == "succeeded"
    assert str(track_id) in catalogue.index  # indexed on publication
    prefix = await pool.fetchval("SELECT media_prefix FROM tracks WHERE id = $1", track_id)
    assert store.children(f"tracks/{track_id}") == [prefix.rsplit("/", 1)[1]]
    assert not list(store.staging_dir().glob(f"{track_id}-*"))
    stages = [e[2]["stage"] for e in heard.events if e[1] == "track.progress"]
    assert set(stages) == {"decode", "analysis", "fingerprint", "waveform", "ladder", "mp3_320", "mp3_128"}
    assert heard.events[-1][1] == "track.ready"
    # The same job run again (a duplicate actor) changes nothing.
    assert await jobs.run(pool, store, settings, track_id, heard, LocalCatalogue()) == "finished"
    assert store.children(f"tracks/{track_id}") == [prefix.rsplit("/", 1)[1]]
