"""The S3 backend against a local S3-compatible server (moto's, over HTTP), with boto3 as in production.

Also one upload published into the bucket by a real job attempt, then served by the media app: manifests
read from the bucket and cut to the grant, files handed out as presigned URLs that honour Range.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.conftest import free_port
from verseflow.errors import NotFound, PayloadTooLarge

BUCKET = "verseflow-test-media"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "verseflow-test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "verseflow-test-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def store(s3_endpoint, tmp_path):
    from verseflow.s3_storage import S3ObjectStore

    return S3ObjectStore(BUCKET, endpoint_url=s3_endpoint, region="us-east-1", cache_dir=tmp_path / "cache")


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_the_protocol_on_a_bucket(store, tmp_path):
    prefix = f"t/{uuid.uuid4().hex}"
    stored = await store.put_stream(f"{prefix}/a.bin", chunks(b"hello ", b"world"), max_bytes=100)
    assert (stored.size, len(stored.sha256)) == (11, 64)
    assert store.size(f"{prefix}/a.bin") == 11 and store.read_bytes(f"{prefix}/a.bin") == b"hello world"
    assert b"".join(store.read_range(f"{prefix}/a.bin", 6, 10)) == b"world"
    with pytest.raises(PayloadTooLarge):
        await store.put_stream(f"{prefix}/big.bin", chunks(b"x" * 60, b"x" * 60), max_bytes=100)
    with pytest.raises(NotFound):
        store.size(f"{prefix}/big.bin")  # refused uploads leave nothing in the bucket

    folder = store.staging_dir() / "v1"
    (folder / "sub").mkdir(parents=True)
    (folder / "m.txt").write_text("manifest")
    (folder / "sub" / "s.bin").write_bytes(b"\x00" * 10)
    store.put_dir(f"{prefix}/v1", folder)
    assert not folder.exists()
    assert store.children(prefix) == ["a.bin", "v1"] and store.children(f"{prefix}/v1") == ["m.txt", "sub"]

    store.cache.delete_prefix(prefix)  # another node: nothing cached, so it is downloaded
    assert store.local_path(f"{prefix}/v1/m.txt").read_text() == "manifest"
    with pytest.raises(NotFound):
        store.local_path(f"{prefix}/missing")
    async with httpx.AsyncClient() as http:
        url = store.presigned_url(f"{prefix}/a.bin", 60)
        ranged = await http.get(url, headers={"Range": "bytes=0-4"})
        assert ranged.status_code == 206 and ranged.content == b"hello"
    assert store.delete_prefix(prefix) == 3 and store.children(prefix) == []


async def test_a_job_publishes_into_the_bucket_and_the_media_app_redirects(api, pool, settings, s3_endpoint,
                                                                            store, tmp_path):
    from accounts.model import Principal, Role
    from audio import jobs, service
    from audio.landmark_index import LocalCatalogue
    from serve_deployments.media import create_media_app
    from tests.audio_fixtures import tone, write_audio
    from verseflow.signing import MediaGrant

    owner = await api.user("artist")
    artist = await api.http.post("/v1/artists", json={"name": "S3"}, headers=owner["headers"])
    who = Principal(uuid.UUID(owner["id"]), Role.ARTIST)
    track_id = uuid.uuid4()
    source = write_audio(tmp_path / "source.flac", tone(440.0, seconds=8.0), 44100)
    stored = store.put_file(service.source_key(track_id), source)
    fields = service.UploadFields("In a bucket", uuid.UUID(artist.json()["id"]))
    await service.accept_upload(pool, store, settings, who, track_id, fields, stored)
    store.cache.delete_prefix("uploads")  # the job's node has no local copy

    async def quiet(*_: object) -> None:
        return None

    assert await jobs.run(pool, store, settings, track_id, quiet, LocalCatalogue()) == "succeeded"
    prefix = await pool.fetchval("SELECT media_prefix FROM tracks WHERE id = $1", track_id)
    version = prefix.rsplit("/", 1)[1]
    assert "master.m3u8" in store.children(prefix) and "seg-0-00001.m4s" in store.children(prefix)

    s3_settings = settings.model_copy(update={"storage_backend": "s3", "s3_endpoint_url": s3_endpoint,
                                              "s3_bucket": BUCKET, "storage_dir": tmp_path / "media-cache"})
    media = create_media_app(s3_settings)
    grant = MediaGrant(track_id, version, frozenset({"aac64", "aac128"}), int(time.time()) + 300)
    base = grant.path(settings.secret()).removeprefix("/media")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=media), base_url="http://media.test") as http:
        master = await http.get(base + "master.m3u8")
        assert master.status_code == 200 and master.text.count("#EXT-X-STREAM-INF") == 2
        segment = await http.get(base + "seg-1-00001.m4s")
        assert segment.status_code == 307 and "immutable" in segment.headers["cache-control"]
        assert (await http.get(base + "seg-2-00001.m4s")).status_code == 403  # aac256 not granted
    async with httpx.AsyncClient() as bucket:
        ranged = await bucket.get(segment.headers["location"], headers={"Range": "bytes=0-99"})
        assert ranged.status_code == 206 and len(ranged.content) == 100
        assert ranged.content == store.read_bytes(f"{prefix}/seg-1-00001.m4s")[:100]


async def test_pieces_are_composed_from_the_bucket(store):
    prefix = f"t/{uuid.uuid4().hex}"
    await store.put_stream(f"{prefix}/p0", chunks(b"hello "), max_bytes=100)
    await store.put_stream(f"{prefix}/p1", chunks(b"world"), max_bytes=100)
    store.cache.delete_prefix(prefix)  # received by another node: only the bucket has them
    joined = store.compose(f"{prefix}/whole", [f"{prefix}/p0", f"{prefix}/p1"])
    assert (joined.size, store.read_bytes(f"{prefix}/whole")) == (11, b"hello world")
    store.delete(f"{prefix}/p0")
    with pytest.raises(NotFound):
        store.size(f"{prefix}/p0")
    store.delete(f"{prefix}/p0")  # twice is fine (deletes are retried after crashes)
    assert store.children(prefix) == ["p1", "whole"]


async def test_a_resumable_upload_on_the_bucket(api, pool, settings, store, tmp_path):
    """Two appends stored as objects in the bucket, joined at the last byte into the track's source."""
    from accounts.model import Principal, Role
    from audio import resumable, service
    from tests.audio_fixtures import tone, write_audio

    owner = await api.user("artist")
    artist = await api.http.post("/v1/artists", json={"name": "Resumable S3"}, headers=owner["headers"])
    who = Principal(uuid.UUID(owner["id"]), Role.ARTIST)
    data = write_audio(tmp_path / "source.flac", tone(330.0, seconds=4.0), 44100).read_bytes()
    fields = service.UploadFields("Resumed into a bucket", uuid.UUID(artist.json()["id"]))
    upload = await resumable.create(pool, settings, who, length=len(data), fields=fields)
    half = await resumable.append(pool, store, settings, who, upload.id, offset=0, body=chunks(data[:3000]))
    assert half.upload.offset == 3000 and store.children(resumable.parts_prefix(upload.id))
    store.cache.delete_prefix("resumable")  # the next append lands on another node

    started = []

    async def start(track_id: uuid.UUID) -> None:
        started.append(track_id)

    done = await resumable.append(pool, store, settings, who, upload.id, offset=3000, body=chunks(data[3000:]),
                                  on_complete=start)
    assert done.upload.completed and started == [upload.track_id] and done.source.codec == "flac"
    assert store.read_bytes(service.source_key(upload.track_id)) == data
    assert store.children(resumable.parts_prefix(upload.id)) == []  # pieces gone from the bucket
    status = await pool.fetchval("SELECT status FROM tracks WHERE id = $1", upload.track_id)
    assert status == "processing"
