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

from tests.test_audio_pipeline import RATE, artist, song, wait_done
from tests.audio_fixtures import write_audio

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
    beyond = await patch(api.http, owner, location, 0, data + b"extra")
    assert beyond.status_code == 413 and beyond.headers["tus-resumable"] == "1.0.0"

    first = await patch(api.http, owner, location, 0, data[:1000])
    assert first.status_code == 204 and first.headers["upload-offset"] == "1000"
    head = await api.http.head(location, headers={**TUS, **owner["headers"]})
    assert head.status_code == 200
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("1000", str(len(data)))
    assert head.headers["cache-control"] == "no-store" and "upload-expires" in head.headers
    assert base64.b64decode(dict(p.split(" ") for p in head.headers["upload-metadata"].split(","))["title"]) == b"Resumed"
    stale = await patch(api.http, owner, location, 0, data[:1000])
    assert stale.status_code == 409 and stale.json()["upload_offset"] == 1000

    too_big = await create(api.http, owner, artist_id, settings.upload_max_bytes + 1)
    assert too_big.status_code == 413 and too_big.headers["content-type"] == "application/problem+json"
    no_length = await api.http.post("/v1/uploads", headers={**TUS, **owner["headers"],
                                                            "Upload-Metadata": metadata(title="x", artist_id=artist_id)})
    assert no_length.status_code == 400
    bad_metadata = await api.http.post("/v1/uploads", headers={**TUS, **owner["headers"], "Upload-Length": "10",
                                                               "Upload-Metadata": "title not-base64!"})
    assert bad_metadata.status_code == 400
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


def send_half_and_hang_up(url: str, path: str, headers: dict[str, str], body: bytes, sent: int) -> None:
    """A PATCH announcing ``len(body)`` bytes whose connection drops after ``sent`` of them."""
    target = urlparse(url)
    lines = [f"PATCH {path} HTTP/1.1", f"Host: {target.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((target.hostname, target.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sock.sendall(body[:sent])
        time.sleep(0.5)  # the proxy has relayed what it received


async def test_a_patch_cut_mid_body_keeps_what_arrived(api, serve_url, settings, audio_file):
    owner, artist_id = await artist(api)
    data = audio_file.read_bytes()
    location = (await create(api.http, owner, artist_id, len(data))).headers["location"]
    half = len(data) // 2
    await asyncio.to_thread(send_half_and_hang_up, serve_url, location,
                            {**OCTETS, **owner["headers"], "Upload-Offset": "0"}, data, half)
    started = time.monotonic()
    deadline = time.monotonic() + 70
    while True:
        head = await api.http.head(location, headers={**TUS, **owner["headers"]})
        offset = int(head.headers["upload-offset"])
        if offset > 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    print("offset after cut", offset, "of", half, len(data), time.monotonic() - started)
    assert 0 < offset <= half
