"""Uploads end to end: multipart upload → TranscodeJob actor (real Ray) → PostgreSQL → signed media on Serve.

Audio is rendered by the tests (``audio/synthetic.py``: drums, bass, chords and melody of known tempo
and key), written in real codecs; ffprobe (Debian's ffmpeg) reads what the media deployment serves.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from scipy.signal import resample_poly

from audio.key import estimate_key
from audio.repository import decode_landmarks
from audio.synthetic import SongSpec, render
from tests.audio_fixtures import write_audio
from tests.realtime_support import Client

pytestmark = pytest.mark.timeout(300)

RATE = 44100


def song(seed: int, seconds: float = 20.0, **spec: Any) -> np.ndarray:
    defaults = {"bpm": 96 + seed % 50, "tonic": "CDEFGAB"[seed % 7], "mode": ("major", "minor")[seed % 2]}
    return render(SongSpec(seed=seed, seconds=seconds, **(defaults | spec)), RATE)


async def upload(api, owner: dict, artist_id: str, path: Path, title: str = "Song") -> httpx.Response:
    return await api.http.post(
        "/v1/tracks", data={"title": title, "artist_id": artist_id},
        files={"file": (path.name, path.read_bytes(), "application/octet-stream")}, headers=owner["headers"])


async def wait_done(api, track_id: str, headers: dict, timeout: float = 180) -> dict:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await api.http.get(f"/v1/tracks/{track_id}", headers=headers)
        assert response.status_code == 200, response.text
        track = response.json()
        if track["status"] in ("ready", "failed"):
            return track
        await asyncio.sleep(0.3)
    raise AssertionError(f"track {track_id} still {track['status']}: {track['job']}")


async def artist(api) -> tuple[dict, str]:
    owner = await api.user("artist")
    response = await api.http.post("/v1/artists", json={"name": f"Artist {uuid.uuid4().hex[:6]}"},
                                   headers=owner["headers"])
    assert response.status_code == 201, response.text
    return owner, response.json()["id"]


def ffprobe_duration(url: str) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", url],
                         capture_output=True, text=True, timeout=60, check=True)
    return float(json.loads(out.stdout)["format"]["duration"])


@pytest.fixture
def media(media_url, ray_cluster, realtime) -> str:
    return media_url


async def test_upload_streams_everywhere_with_analysis_and_progress(api, media, realtime, tmp_path):
    owner, artist_id = await artist(api)
    listener = await api.user()
    socket = await Client.open(realtime["edge"], owner["access_token"])
    path = write_audio(tmp_path / "song.flac", song(1, seconds=20.0, bpm=120, tonic="A", mode="minor"), RATE)

    accepted = await upload(api, owner, artist_id, path, title="Upload to ready")
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["status"] == "processing" and body["source"]["codec"] == "flac"
    assert accepted.headers["location"] == f"/v1/tracks/{body['id']}"
    # Unpublished work is the owner's alone.
    assert (await api.http.get(f"/v1/tracks/{body['id']}", headers=listener["headers"])).status_code == 404

    track = await wait_done(api, body["id"], owner["headers"])
    assert track["status"] == "ready", track["error"]
    analysis = track["analysis"]
    assert abs(analysis["duration_s"] - 20.0) < 0.05
    assert analysis["loudness"]["integrated_lufs"] < 0 and analysis["loudness"]["true_peak_dbtp"] <= 0.5
    assert abs(analysis["loudness"]["gain_db_to_minus_14"] - (-14 - analysis["loudness"]["integrated_lufs"])) < 0.01
    assert abs(analysis["tempo"]["bpm"] - 120) / 120 < 0.04
    # Key accuracy is measured over a corpus (bench/audio_bench.py, test_tempo_key.py); here: the job's answer
    # is the analyser's answer on the decoded upload, so the pipeline fed it the right audio.
    source = song(1, seconds=20.0, bpm=120, tonic="A", mode="minor").mean(axis=0)
    expected = estimate_key(resample_poly(source, 1, 2).astype(np.float32), 22050)
    assert analysis["key"]["label"] == expected.label
    assert analysis["genre"]["label"] and "synthetic" in analysis["genre"]["model"]
    assert "timbre" not in analysis  # off by default (transcode_timbre): the job never imported torch
    assert track["job"]["state"] == "succeeded" and track["job"]["attempts"] == 1

    # The uploader's WebSocket session heard the progress, stage by stage, then "ready", in that order.
    events = []
    while not events or events[-1]["event"] != "track.ready":
        events.append(await socket.next("notify", timeout=30))
    progress = [e["data"]["progress"] for e in events if e["event"] == "track.progress"]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0, abs=0.01)
    assert {e["data"]["stage"] for e in events if e["event"] == "track.progress"} >= {"decode", "ladder", "mp3_320"}
    await socket.close()

    # The owner gets every rung; ffprobe reads the master playlist, each rung, the MPD and the MP3s.
    streams = track["streams"]
    assert streams["rungs"] == ["aac128", "aac256", "aac64", "mp3_128", "mp3_320"]
    hls = media + streams["hls"]
    assert abs(ffprobe_duration(hls) - 20.0) < 0.2
    for rung in ("aac64", "aac128", "aac256"):
        assert abs(ffprobe_duration(hls.replace("master.m3u8", f"{rung}.m3u8")) - 20.0) < 0.2
    assert abs(ffprobe_duration(media + streams["dash"]) - 20.0) < 0.2
    for url in streams["mp3"].values():
        assert abs(ffprobe_duration(media + url) - 20.0) < 0.2

    async with httpx.AsyncClient(base_url=media) as http:
        master = await http.get(streams["hls"])
        assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert master.text.count("#EXT-X-STREAM-INF:") == 3 and "AVERAGE-BANDWIDTH=" in master.text
        assert "immutable" in master.headers["cache-control"]
        mpd = await http.get(streams["dash"])
        assert mpd.headers["content-type"] == "application/dash+xml" and mpd.text.count("<Representation") == 3

        # A listener's grant covers the standard rungs only: manifests are cut, other files refused.
        view = (await api.http.get(f"/v1/tracks/{body['id']}", headers=listener["headers"])).json()
        granted = view["streams"]
        assert granted["rungs"] == ["aac128", "aac64", "mp3_128"] and list(granted["mp3"]) == ["mp3_128"]
        cut = await http.get(granted["hls"])
        assert "aac256.m3u8" not in cut.text and cut.text.count("#EXT-X-STREAM-INF:") == 2
        assert (await http.get(granted["dash"])).text.count("<Representation") == 2
        base = granted["hls"].rsplit("/", 1)[0]
        for refused in ("aac256.m3u8", "init-2.mp4", "seg-2-00001.m4s", "mp3_320.mp3"):
            denied = await http.get(f"{base}/{refused}")
            assert denied.status_code == 403, refused
            assert denied.headers["content-type"] == "application/problem+json"
        assert (await http.get(f"{base}/seg-0-00001.m4s")).status_code == 200

        # Waveform: audiowaveform v2 at 256 samples per pixel and coarser levels.
        wave = await api.http.get(f"/v1/tracks/{body['id']}/waveform", headers=listener["headers"])
        assert wave.status_code == 200
        document = wave.json()
        assert (document["version"], document["bits"], document["samples_per_pixel"]) == (2, 8, 256)
        assert document["length"] == -(-20 * RATE // 256) and len(document["data"]) == 2 * document["length"]
        coarse = (await api.http.get(f"/v1/tracks/{body['id']}/waveform?zoom=1024")).json()
        assert coarse["samples_per_pixel"] == 1024 and coarse["length"] == -(-document["length"] // 4)
        assert (await api.http.get(f"/v1/tracks/{body['id']}/waveform?zoom=300")).status_code == 422


async def test_range_requests_and_signed_url_rules(api, media, tmp_path, settings):
    from verseflow.signing import MediaGrant

    owner, artist_id = await artist(api)
    path = write_audio(tmp_path / "range.wav", song(2, seconds=8.0), RATE)
    async with httpx.AsyncClient(base_url=media) as through_serve:  # the real path: proxy, replica, actor
        accepted = await through_serve.post(
            "/v1/tracks", data={"title": "Via Serve", "artist_id": artist_id}, headers=owner["headers"],
            files={"file": (path.name, path.read_bytes(), "audio/wav")})
    assert accepted.status_code == 202, accepted.text
    track_id = accepted.json()["id"]
    track = await wait_done(api, track_id, owner["headers"])
    mp3 = track["streams"]["mp3"]["mp3_320"]
    async with httpx.AsyncClient(base_url=media) as http:
        whole = await http.get(mp3)
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-type"] == "audio/mpeg"
        size = len(whole.content)

        part = await http.get(mp3, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == whole.content[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{size}"
        tail = await http.get(mp3, headers={"Range": "bytes=-50"})
        assert tail.status_code == 206 and tail.content == whole.content[-50:]
        beyond = await http.get(mp3, headers={"Range": f"bytes={size + 10}-"})
        assert beyond.status_code == 416
        head = await http.head(mp3)
        assert head.status_code == 200 and int(head.headers["content-length"]) == size

        segment = track["streams"]["hls"].replace("master.m3u8", "seg-1-00001.m4s")
        assert (await http.get(segment)).headers["content-type"] == "audio/mp4"

        # Tampered: one character of the signature, the expiry or the rung list changed.
        parts = mp3.split("/")  # ['', 'media', track, version, rungs, expires, signature, file]
        tampered_signature = parts.copy()
        tampered_signature[6] = ("A" if parts[6][0] != "A" else "B") + parts[6][1:]
        longer = parts.copy()
        longer[5] = str(int(parts[5]) + 3600)
        more_rungs = parts.copy()
        more_rungs[4] = parts[4] + "+aac999"
        for forged in (tampered_signature, longer, more_rungs):
            refused = await http.get("/".join(forged))
            assert refused.status_code == 403, forged
            assert refused.json()["status"] == 403

        # Unsigned, and expired (a correctly signed grant whose time has passed).
        assert (await http.get(f"/media/tracks/{track_id}/mp3_320.mp3")).status_code == 403
        assert (await http.get(f"/media/{track_id}/{parts[3]}/mp3_320.mp3")).status_code == 403
        expired = MediaGrant(uuid.UUID(track_id), parts[3], frozenset({"mp3_320"}), int(time.time()) - 1)
        response = await http.get(expired.path(settings.secret()) + "mp3_320.mp3")
        assert response.status_code == 403 and "expired" in response.json()["detail"]
        fresh = MediaGrant(uuid.UUID(track_id), parts[3], frozenset({"mp3_320"}), int(time.time()) + 60)
        assert (await http.get(fresh.path(settings.secret()) + "mp3_320.mp3")).status_code == 200


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("notes.mp3", b"these are my lyrics, not audio\n" * 50, "not_audio"),
    ("empty.wav", b"", "empty"),
    ("image.flac", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "not_audio"),
])
async def test_uploads_that_are_not_audio_are_refused(api, media, name, content, reason):
    owner, artist_id = await artist(api)
    response = await api.http.post("/v1/tracks", data={"title": "Bad", "artist_id": artist_id},
                                   files={"file": (name, content, "audio/mpeg")}, headers=owner["headers"])
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == reason


async def test_corrupt_audio_is_refused_and_nothing_is_kept(api, media, tmp_path, settings):
    owner, artist_id = await artist(api)
    uploads = settings.media_dir() / "uploads"
    before = sorted(uploads.rglob("*")) if uploads.exists() else []
    good = write_audio(tmp_path / "good.mp3", song(3, seconds=4.0), RATE).read_bytes()
    corrupt = good[:200] + bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8))
    response = await api.http.post("/v1/tracks", data={"title": "Broken", "artist_id": artist_id},
                                   files={"file": ("broken.mp3", corrupt, "audio/mpeg")}, headers=owner["headers"])
    assert response.status_code == 422, response.text
    assert response.json()["reason"] in ("corrupt", "not_audio", "empty")
    assert (sorted(uploads.rglob("*")) if uploads.exists() else []) == before


async def test_upload_checks_fields_owner_and_size(api, media, tmp_path, settings, monkeypatch):
    owner, artist_id = await artist(api)
    stranger = await api.user("artist")
    path = write_audio(tmp_path / "x.wav", song(4, seconds=3.0), RATE)
    assert (await upload(api, stranger, artist_id, path)).status_code == 403
    no_file = await api.http.post("/v1/tracks", data={"title": "x", "artist_id": artist_id},
                                  files={"other": ("a", b"b")}, headers=owner["headers"])
    assert no_file.status_code == 422
    bad_field = await api.http.post("/v1/tracks", data={"title": "", "artist_id": artist_id},
                                    files={"file": ("x.wav", path.read_bytes())}, headers=owner["headers"])
    assert bad_field.status_code == 422
    monkeypatch.setattr(settings, "upload_max_bytes", 10_000)
    too_big = await upload(api, owner, artist_id, path)
    assert too_big.status_code == 413, too_big.text
    assert too_big.headers["content-type"] == "application/problem+json"


async def test_a_killed_job_is_retried_and_publishes_exactly_once(api, media, tmp_path, settings, pool):
    import ray

    from actors.transcode import job_for

    owner, artist_id = await artist(api)
    path = write_audio(tmp_path / "long.flac", song(5, seconds=90.0), RATE)
    track_id = (await upload(api, owner, artist_id, path)).json()["id"]
    deadline = time.monotonic() + 60
    while (job := await pool.fetchrow("SELECT stage, attempts FROM track_jobs WHERE track_id = $1",
                                      uuid.UUID(track_id)))["stage"] is None:
        assert time.monotonic() < deadline, "the job never started"
        await asyncio.sleep(0.05)
    assert job["attempts"] == 1
    ray.kill(job_for(uuid.UUID(track_id)), no_restart=False)  # mid-pipeline: decoded, not yet encoded

    track = await wait_done(api, track_id, owner["headers"])
    assert track["status"] == "ready" and track["job"]["attempts"] == 2
    versions = list((settings.media_dir() / "tracks" / track_id).iterdir())
    assert [v.name for v in versions] == [track["streams"]["hls"].split("/")[3]]
    assert not list((settings.media_dir() / ".staging").glob(f"{track_id}-*"))
    events = await pool.fetchval("SELECT count(*) FROM outbox WHERE type = 'track.ready' AND aggregate_id = $1",
                                 track_id)
    assert events == 1
    stored = await pool.fetchrow("SELECT hashes, times FROM track_fingerprints WHERE track_id = $1",
                                 uuid.UUID(track_id))
    landmarks = decode_landmarks(stored["hashes"], stored["times"])
    distinct = len(set(zip(landmarks.hashes.tolist(), landmarks.times.tolist(), strict=True)))
    assert len(landmarks.hashes) > 1000 and distinct >= len(landmarks.hashes) * 0.95  # one set, not two copies


async def test_identify_noisy_reencoded_and_sped_up_clips(api, media, tmp_path):
    owner, artist_id = await artist(api)
    songs = {seed: song(seed, seconds=30.0) for seed in (11, 12, 13)}
    ids = {}
    for seed, samples in songs.items():
        path = write_audio(tmp_path / f"s{seed}.flac", samples, RATE)
        ids[seed] = (await upload(api, owner, artist_id, path, title=f"Song {seed}")).json()["id"]
    for track_id in ids.values():
        assert (await wait_done(api, track_id, owner["headers"]))["status"] == "ready"

    rng = np.random.default_rng(7)
    reference = songs[12]
    clip = reference[:, 10 * RATE:20 * RATE]
    power = float(np.mean(clip ** 2))
    cases = {
        "clean-5s": (reference[:, 5 * RATE:10 * RATE], ".wav", 5.0),
        "noise-10dB": (clip + rng.normal(0, np.sqrt(power / 10), clip.shape).astype(np.float32), ".wav", 10.0),
        "noise-0dB": (clip + rng.normal(0, np.sqrt(power), clip.shape).astype(np.float32), ".wav", 10.0),
        "mp3": (clip, ".mp3", 10.0),
        "faster-3%": (resample_poly(clip, 100, 103, axis=1).astype(np.float32), ".wav", 10.0),
        "slower-3%": (resample_poly(clip, 103, 100, axis=1).astype(np.float32), ".wav", 10.0),
    }
    for name, (samples, suffix, start) in cases.items():
        path = write_audio(tmp_path / f"clip-{name}{suffix}", samples, RATE)
        response = await api.http.post("/v1/fingerprint/identify", headers=owner["headers"],
                                       files={"file": (path.name, path.read_bytes())})
        assert response.status_code == 200, response.text
        match = response.json()["match"]
        assert match is not None, name
        assert match["track_id"] == ids[12], name
        assert abs(match["offset_s"] - start) < 0.3, (name, match)

    silence_and_noise = (rng.normal(0, 0.1, (2, 8 * RATE))).astype(np.float32)
    other = write_audio(tmp_path / "unknown.wav", silence_and_noise, RATE)
    none = await api.http.post("/v1/fingerprint/identify", headers=owner["headers"],
                               files={"file": (other.name, other.read_bytes())})
    assert none.status_code == 200 and none.json() == {"match": None, "candidates": []}

    short = write_audio(tmp_path / "short.wav", reference[:, : 3 * RATE], RATE)
    too_short = await api.http.post("/v1/fingerprint/identify", headers=owner["headers"],
                                    files={"file": (short.name, short.read_bytes())})
    assert too_short.status_code == 422 and "5 s" in too_short.json()["detail"]

    # A re-upload of the same recording (re-encoded) lists the original among its matches.
    copy = write_audio(tmp_path / "copy.mp3", songs[13], RATE)
    duplicate_id = (await upload(api, owner, artist_id, copy, title="Suspicious")).json()["id"]
    duplicate = await wait_done(api, duplicate_id, owner["headers"])
    assert [m["track_id"] for m in duplicate["matches"]][:1] == [ids[13]]
    assert abs(duplicate["matches"][0]["offset_s"]) < 0.3


async def test_plays_are_recorded_once(api, media, tmp_path, pool):
    owner, artist_id = await artist(api)
    listener = await api.user()
    path = write_audio(tmp_path / "p.wav", song(6, seconds=5.0), RATE)
    track_id = (await upload(api, owner, artist_id, path)).json()["id"]
    play_id = str(uuid.uuid4())
    early = await api.http.post("/v1/plays", headers=listener["headers"], json={
        "track_id": track_id, "play_id": play_id, "event": "start", "position_ms": 0})
    assert early.status_code in (404, 422)  # not playable (nor visible to others) while processing
    await wait_done(api, track_id, owner["headers"])
    for event, position in (("start", 0), ("progress", 30_000), ("complete", 60_000), ("complete", 60_000)):
        response = await api.http.post("/v1/plays", headers=listener["headers"], json={
            "track_id": track_id, "play_id": play_id, "event": event, "position_ms": position, "rung": "aac128"})
        assert response.status_code == 202, response.text
    assert response.json() == {"recorded": False}
    stored = await pool.fetch("SELECT event FROM plays WHERE play_id = $1 ORDER BY id", uuid.UUID(play_id))
    assert [r["event"] for r in stored] == ["start", "progress", "complete"]
    unknown = await api.http.post("/v1/plays", headers=listener["headers"], json={
        "track_id": str(uuid.uuid4()), "play_id": play_id, "event": "start", "position_ms": 0})
    assert unknown.status_code == 404
    anonymous = await api.http.post("/v1/plays", json={
        "track_id": track_id, "play_id": play_id, "event": "start", "position_ms": 0})
    assert anonymous.status_code == 401
