"""Resumable uploads (tus 1.0 at /v1/uploads) against real PostgreSQL, Redis, Ray and Serve.

The client is tuspy, a real tus implementation, over HTTP through Serve's proxy; protocol edges are
driven with httpx (in-process) and, for a body cut mid-stream, a raw socket. Expiry is shown both by
calling the sweeper as if later and by the event worker's periodic sweep.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.audio_fixtures import write_audio
from tests.test_audio_pipeline import RATE, artist, song, wait_done

pytestmark = pytest.mark.timeout(300)

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}


def metadata(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


async def create(http: httpx.AsyncClient, owner: dict, artist_id: str, length: int, **extra: str) -> httpx.Response:
    return await http.post("/v1/uploads", headers={
        **TUS, **owner["headers"], "Upload-Length": str(length),
        "Upload-Metadata": metadata(title=extra.pop("title", "Resumed"), artist_id=artist_id, **extra)})


async def patch(http: httpx.AsyncClient, owner: dict, location: str, offset: int, data: bytes,
                **headers: str) -> httpx.Response:
    return await http.patch(location, content=data,
                            headers={**OCTETS, **owner["headers"], "Upload-Offset": str(offset), **headers})


def stored_under(settings, prefix: str) -> list[Path]:
    folder = settings.media_dir() / prefix
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture
def audio_file(tmp_path) -> Path:
    return write_audio(tmp_path / "long.flac", song(21, seconds=12.0), RATE)


async def test_options_tells_what_the_server_speaks(client, settings):
    response = await client.options("/v1/uploads")
    assert response.status_code == 204
    assert response.headers["tus-version"] == "1.0.0" and response.headers["tus-resumable"] == "1.0.0"
    assert set(response.headers["tus-extension"].split(",")) >= {"creation", "termination", "expiration"}
    assert int(response.headers["tus-max-size"]) == settings.upload_max_bytes


async def test_protocol_errors(api, settings, ray_cluster, audio_file):
    owner, artist_id = await artist(api)
    data = audio_file.read_bytes()
    created = await create(api.http, owner, artist_id, len(data))
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert location.startswith("/v1/uploads/") and "upload-expires" in created.headers

    no_version = await api.http.head(location, headers=owner["headers"])
    assert no_version.status_code == 412 and no_version.headers["tus-version"] == "1.0.0"
    wrong_type = await api.http.patch(location, content=data[:10], headers={
        **TUS, **owner["headers"], "Upload-Offset": "0", "Content-Type": "application/octet-stream"})
    assert wrong_type.status_code == 415 and wrong_type.headers["content-type"] == "application/problem+json"
    wrong_offset = await patch(api.http, owner, location, 5, data[:10])
    assert wrong_offset.status_code == 409 and wrong_offset.json()["upload_offset"] == 0
    no_offset = await api.http.patch(location, content=b"x", headers={**OCTETS, **owner["headers"]})
    assert no_offset.status_code == 400
    assert (await patch(api.http, owner, location, 10**20, b"x")).status_code == 400  # beyond bigint: refused
    beyond = await patch(api.http, owner, location, 0, data + b"extra")
    assert beyond.status_code == 413 and beyond.headers["tus-resumable"] == "1.0.0"

    first = await patch(api.http, owner, location, 0, data[:1000])
    assert first.status_code == 204 and first.headers["upload-offset"] == "1000"
    head = await api.http.head(location, headers={**TUS, **owner["headers"]})
    assert head.status_code == 200
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("1000", str(len(data)))
    assert head.headers["cache-control"] == "no-store" and "upload-expires" in head.headers
    echoed = dict(pair.split(" ") for pair in head.headers["upload-metadata"].split(","))
    assert base64.b64decode(echoed["title"]) == b"Resumed"
    stale = await patch(api.http, owner, location, 0, data[:1000])
    assert stale.status_code == 409 and stale.json()["upload_offset"] == 1000

    too_big = await create(api.http, owner, artist_id, settings.upload_max_bytes + 1)
    assert too_big.status_code == 413 and too_big.headers["content-type"] == "application/problem+json"
    no_length = await api.http.post("/v1/uploads", headers={
        **TUS, **owner["headers"], "Upload-Metadata": metadata(title="x", artist_id=artist_id)})
    assert no_length.status_code == 400
    bad_metadata = await api.http.post("/v1/uploads", headers={**TUS, **owner["headers"], "Upload-Length": "10",
                                                               "Upload-Metadata": "title not-base64!"})
    assert bad_metadata.status_code == 400
    nul = await api.http.post("/v1/uploads", headers={**TUS, **owner["headers"], "Upload-Length": "10",
                                                      "Upload-Metadata": metadata(title="x", artist_id=artist_id,
                                                                                  filename="a\x00b")})
    assert nul.status_code == 400
    no_title = await api.http.post("/v1/uploads", headers={**TUS, **owner["headers"], "Upload-Length": "10",
                                                           "Upload-Metadata": metadata(artist_id=artist_id)})
    assert no_title.status_code == 422
    anonymous = await api.http.post("/v1/uploads", headers={**TUS, "Upload-Length": "10"})
    assert anonymous.status_code == 401 and anonymous.headers["tus-resumable"] == "1.0.0"

    gone = await api.http.delete(location, headers={**TUS, **owner["headers"]})
    assert gone.status_code == 204
    assert stored_under(settings, f"resumable/{location.rsplit('/', 1)[1]}") == []
    assert (await api.http.head(location, headers={**TUS, **owner["headers"]})).status_code == 404


async def test_only_the_creator_sees_an_upload_and_ownership_is_checked_first(api, audio_file):
    owner, artist_id = await artist(api)
    stranger, strangers_artist = await artist(api)
    refused = await create(api.http, stranger, artist_id, 1000)
    assert refused.status_code == 403  # not their artist: refused before any byte
    album = await api.http.post("/v1/albums", json={"title": "Theirs", "artist_id": strangers_artist},
                                headers=stranger["headers"])
    assert album.status_code == 201, album.text
    wrong_album = await create(api.http, owner, artist_id, 1000, album_id=album.json()["id"])
    assert wrong_album.status_code == 422

    location = (await create(api.http, owner, artist_id, 1000)).headers["location"]
    for response in (
        await api.http.head(location, headers={**TUS, **stranger["headers"]}),
        await patch(api.http, stranger, location, 0, b"x" * 10),
        await api.http.delete(location, headers={**TUS, **stranger["headers"]}),
    ):
        assert response.status_code == 404, response.text
    assert (await api.http.head(location, headers={**TUS, **owner["headers"]})).headers["upload-offset"] == "0"


def open_patch(url: str, path: str, headers: dict[str, str], body: bytes, sent: int) -> socket.socket:
    """A PATCH announcing ``len(body)`` bytes of which only ``sent`` go out; the caller hangs up."""
    target = urlparse(url)
    lines = [f"PATCH {path} HTTP/1.1", f"Host: {target.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock = socket.create_connection((target.hostname, target.port), timeout=30)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    sock.sendall(body[:sent])
    return sock


def tus_uploader(serve_url: str, owner: dict, path: Path, artist_id: str, storage_path: Path, **options):
    """A tuspy uploader that stores its upload URL by file fingerprint, as apps do to resume later."""
    from tusclient.client import TusClient
    from tusclient.storage.filestorage import FileStorage

    client = TusClient(f"{serve_url}/v1/uploads", headers=owner["headers"])
    return client.uploader(str(path), metadata={"title": "Resumed upload", "artist_id": artist_id,
                                                "filename": path.name, "filetype": "audio/flac"},
                           store_url=True, url_storage=FileStorage(str(storage_path)), **options)


async def finished_track(api, owner: dict, location: str) -> str:
    head = await api.http.head(urlparse(location).path, headers={**TUS, **owner["headers"]})
    assert head.status_code == 200 and head.headers["upload-offset"] == head.headers["upload-length"]
    assert head.headers["location"] == f"/v1/tracks/{head.headers['x-track-id']}"
    assert "upload-expires" not in head.headers
    return head.headers["x-track-id"]


async def test_tuspy_upload_stopped_at_half_resumes_and_makes_one_track(api, serve_url, pool, audio_file,
                                                                         tmp_path, settings):
    owner, artist_id = await artist(api)
    data = audio_file.read_bytes()
    half = len(data) // 2
    storage = tmp_path / "tus-urls.json"

    first = tus_uploader(serve_url, owner, audio_file, artist_id, storage, chunk_size=half)
    await asyncio.to_thread(first.upload, stop_at=half)  # the app is closed halfway
    assert first.offset == half
    location = first.url

    again = await asyncio.to_thread(tus_uploader, serve_url, owner, audio_file, artist_id, storage,
                                    chunk_size=256 * 1024)
    assert again.url == location and again.offset == half  # from the server's offset, not from zero
    await asyncio.to_thread(again.upload)
    assert again.request.response_headers["x-track-id"]

    track_id = await finished_track(api, owner, location)
    assert again.request.response_headers["x-track-id"] == track_id
    track = await wait_done(api, track_id, owner["headers"])
    assert track["status"] == "ready" and track["title"] == "Resumed upload", track["error"]
    assert abs(track["analysis"]["duration_s"] - 12.0) < 0.05
    row = await pool.fetchrow("SELECT source_bytes, source_sha256 FROM tracks WHERE id = $1", uuid.UUID(track_id))
    assert (row["source_bytes"], row["source_sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    made = await pool.fetchval("SELECT count(*) FROM tracks WHERE artist_id = $1", uuid.UUID(artist_id))
    assert made == 1
    assert stored_under(settings, f"resumable/{location.rsplit('/', 1)[1]}") == []  # pieces gone


async def test_a_patch_cut_mid_body_keeps_what_arrived(api, serve_url, settings, audio_file, tmp_path, pool):
    owner, artist_id = await artist(api)
    data = audio_file.read_bytes()
    storage = tmp_path / "tus-urls.json"
    uploader = tus_uploader(serve_url, owner, audio_file, artist_id, storage)
    await asyncio.to_thread(lambda: uploader.set_url(uploader.create_url()))
    location = urlparse(uploader.url).path
    half = len(data) // 2
    sock = await asyncio.to_thread(open_patch, serve_url, location,
                                   {**OCTETS, **owner["headers"], "Upload-Offset": "0"}, data, half)
    try:  # hang up once the replica is writing the body: what it read before the cut must be kept
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size for p in stored_under(settings, f"resumable/{location.rsplit('/', 1)[1]}")):
            assert time.monotonic() < deadline, "no byte of the PATCH reached the replica's store"
            await asyncio.sleep(0.05)
    finally:
        sock.close()
    deadline = time.monotonic() + 30
    while (offset := int((await api.http.head(location, headers={**TUS, **owner["headers"]}))
                         .headers["upload-offset"])) == 0:
        assert time.monotonic() < deadline, "nothing of the cut body was kept"
        await asyncio.sleep(0.1)
    assert 0 < offset <= half  # what reached the server before the cut, durably

    resumed = await asyncio.to_thread(tus_uploader, serve_url, owner, audio_file, artist_id, storage)
    assert resumed.offset == offset
    await asyncio.to_thread(resumed.upload)
    track_id = await finished_track(api, owner, location)
    row = await pool.fetchrow("SELECT source_sha256 FROM tracks WHERE id = $1", uuid.UUID(track_id))
    assert row["source_sha256"] == hashlib.sha256(data).hexdigest()  # the kept prefix was the right bytes


async def test_audio_refused_at_completion_removes_the_upload(api, settings, ray_cluster):
    owner, artist_id = await artist(api)
    data = b"these are my lyrics, not audio\n" * 200
    location = (await create(api.http, owner, artist_id, len(data))).headers["location"]
    upload_id = location.rsplit("/", 1)[1]
    assert (await patch(api.http, owner, location, 0, data[:3000])).status_code == 204
    assert stored_under(settings, f"resumable/{upload_id}")
    refused = await patch(api.http, owner, location, 3000, data[3000:])
    assert refused.status_code == 422 and refused.json()["reason"] == "not_audio"
    assert refused.headers["tus-resumable"] == "1.0.0"
    assert stored_under(settings, f"resumable/{upload_id}") == []
    assert (await api.http.head(location, headers={**TUS, **owner["headers"]})).status_code == 404


async def test_creation_with_upload(api, settings, ray_cluster, audio_file):
    owner, artist_id = await artist(api)
    data = audio_file.read_bytes()
    response = await api.http.post("/v1/uploads", content=data[:5000], headers={
        **OCTETS, **owner["headers"], "Upload-Length": str(len(data)),
        "Upload-Metadata": metadata(title="With upload", artist_id=artist_id)})
    assert response.status_code == 201 and response.headers["upload-offset"] == "5000"
    done = await patch(api.http, owner, response.headers["location"], 5000, data[5000:])
    assert done.status_code == 204 and done.headers["upload-offset"] == str(len(data))
    assert done.headers["location"] == f"/v1/tracks/{done.headers['x-track-id']}"


async def test_an_abandoned_upload_expires_and_its_bytes_go(api, settings, pool, audio_file):
    from audio import resumable
    from verseflow.storage import object_store

    owner, artist_id = await artist(api)
    data = audio_file.read_bytes()
    location = (await create(api.http, owner, artist_id, len(data))).headers["location"]
    upload_id = uuid.UUID(location.rsplit("/", 1)[1])
    first = await patch(api.http, owner, location, 0, data[: len(data) // 2])
    assert first.status_code == 204 and stored_under(settings, f"resumable/{upload_id}")
    expires = await pool.fetchval("SELECT expires_at FROM resumable_uploads WHERE id = $1", upload_id)
    assert abs((expires - await pool.fetchval("SELECT now()")).total_seconds() - settings.resumable_expiry_s) < 60

    store = object_store(settings)
    await resumable.sweep_expired(pool, store, now=expires - timedelta(seconds=1))  # (earlier uploads go)
    assert stored_under(settings, f"resumable/{upload_id}")
    assert (await api.http.head(location, headers={**TUS, **owner["headers"]})).status_code == 200
    assert await resumable.sweep_expired(pool, store, now=expires + timedelta(seconds=1)) >= 1
    assert stored_under(settings, f"resumable/{upload_id}") == []
    assert await pool.fetchval("SELECT count(*) FROM resumable_upload_parts WHERE upload_id = $1", upload_id) == 0
    assert (await api.http.head(location, headers={**TUS, **owner["headers"]})).status_code == 404
    late = await patch(api.http, owner, location, len(data) // 2, data[len(data) // 2:])
    assert late.status_code == 404


async def test_an_expired_upload_is_gone_before_the_sweep(api, pool):
    owner, artist_id = await artist(api)
    location = (await create(api.http, owner, artist_id, 1000)).headers["location"]
    await pool.execute("UPDATE resumable_uploads SET expires_at = now() - interval '1 second' WHERE id = $1",
                       uuid.UUID(location.rsplit("/", 1)[1]))
    assert (await api.http.head(location, headers={**TUS, **owner["headers"]})).status_code == 410
    assert (await patch(api.http, owner, location, 0, b"x" * 10)).status_code == 410


async def test_the_event_worker_sweeps_expired_uploads(ray_cluster, api, settings, pool):
    from actors.event_worker import start_event_worker, stop_event_worker

    owner, artist_id = await artist(api)
    location = (await create(api.http, owner, artist_id, 5000)).headers["location"]
    upload_id = uuid.UUID(location.rsplit("/", 1)[1])
    assert (await patch(api.http, owner, location, 0, b"x" * 1000)).status_code == 204
    await pool.execute("UPDATE resumable_uploads SET expires_at = now() - interval '1 second' WHERE id = $1",
                       upload_id)
    worker_settings = settings.model_copy(update={"events_stream": f"sweep-{uuid.uuid4().hex[:8]}",
                                                  "resumable_sweep_interval_s": 0.2})
    worker = await asyncio.to_thread(start_event_worker, worker_settings)
    try:
        deadline = time.monotonic() + 30
        while await pool.fetchval("SELECT count(*) FROM resumable_uploads WHERE id = $1", upload_id):
            assert time.monotonic() < deadline, "the worker never swept the expired upload"
            await asyncio.sleep(0.1)
    finally:
        await asyncio.to_thread(stop_event_worker, worker)
    assert stored_under(settings, f"resumable/{upload_id}") == []


async def test_one_patch_at_a_time(api, settings, pool):
    from audio import resumable
    from verseflow.storage import object_store

    owner, artist_id = await artist(api)
    location = (await create(api.http, owner, artist_id, 10_000)).headers["location"]
    upload_id = uuid.UUID(location.rsplit("/", 1)[1])
    release, started = asyncio.Event(), asyncio.Event()

    async def slow_body():
        yield b"a" * 1000
        started.set()
        await release.wait()
        yield b"b" * 1000

    first = asyncio.create_task(resumable.append(pool, object_store(settings), settings, principal(owner), upload_id,
                                                 offset=0, body=slow_body()))
    await asyncio.wait_for(started.wait(), 10)
    second = await patch(api.http, owner, location, 0, b"c" * 1000)  # while the first body is still arriving
    assert second.status_code == 423 and second.headers["content-type"] == "application/problem+json"
    release.set()
    assert (await first).upload.offset == 2000
    assert (await patch(api.http, owner, location, 2000, b"d" * 1000)).headers["upload-offset"] == "3000"


def principal(user: dict):
    from accounts.model import Principal, Role

    return Principal(user_id=uuid.UUID(user["id"]), role=Role.ARTIST)


async def test_a_stalled_patch_loses_its_lease_and_changes_nothing(api, settings, pool):
    """Past the lease another request may take the upload over; the stalled one then writes nothing."""
    from audio import resumable
    from verseflow.errors import Conflict
    from verseflow.storage import object_store

    owner, artist_id = await artist(api)
    location = (await create(api.http, owner, artist_id, 10_000)).headers["location"]
    upload_id = uuid.UUID(location.rsplit("/", 1)[1])
    who = principal(owner)
    short = settings.model_copy(update={"resumable_lease_s": 1.0})
    store = object_store(settings)

    async def stalls():
        yield b"s" * 500
        await asyncio.sleep(1.5)  # past the lease
        yield b"s" * 500

    async def prompt():
        yield b"p" * 700

    stalled = asyncio.create_task(resumable.append(pool, store, short, who, upload_id, offset=0, body=stalls()))
    await asyncio.sleep(1.2)
    taken = await resumable.append(pool, store, short, who, upload_id, offset=0, body=prompt())
    assert taken.upload.offset == 700
    with pytest.raises(Conflict):
        await stalled
    parts = await pool.fetch("SELECT start_offset, size FROM resumable_upload_parts WHERE upload_id = $1", upload_id)
    assert [(p["start_offset"], p["size"]) for p in parts] == [(0, 700)]
    assert len(stored_under(settings, f"resumable/{upload_id}")) == 1
