"""The streaming multipart reader, fed the same bodies in every chunking a proxy might produce."""

from __future__ import annotations

import httpx
import pytest
from starlette.requests import Request

from serve_deployments.multipart import MultipartReader
from verseflow.errors import InvalidInput, PayloadTooLarge

FILE = bytes(range(256)) * 800  # 200 KB, every byte value, boundary-like runs included by chance


def request_for(body: bytes, content_type: str, chunk: int) -> Request:
    position = 0

    async def receive() -> dict:
        nonlocal position
        piece = body[position:position + chunk]
        position += chunk
        return {"type": "http.request", "body": piece, "more_body": position < len(body)}

    return Request({"type": "http", "method": "POST", "headers": [(b"content-type", content_type.encode())]},
                   receive)


def encoded(**files) -> tuple[bytes, str]:
    built = httpx.Request("POST", "http://x/", data={"title": "Ünïcode", "artist_id": "a1"}, files=files)
    return built.read(), built.headers["content-type"]


async def read_all(reader: MultipartReader) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []
    async for part in reader.parts():
        if part.filename is not None:
            seen.append((part.name, b"".join([chunk async for chunk in reader.chunks()])))
        else:
            seen.append((part.name, await reader.value()))
    return seen


@pytest.mark.parametrize("chunk", [1 << 20, 65536, 1000, 7])
async def test_parts_arrive_in_order_whatever_the_chunking(chunk):
    body, content_type = encoded(file=("song.flac", FILE, "audio/flac"))
    parts = await read_all(MultipartReader(request_for(body, content_type, chunk), field_max_bytes=100))
    assert parts == [("title", "Ünïcode"), ("artist_id", "a1"), ("file", FILE)]


async def test_a_skipped_part_is_drained():
    body, content_type = encoded(file=("a.bin", FILE, "application/octet-stream"))
    reader = MultipartReader(request_for(body, content_type, 4096), field_max_bytes=100)
    names = [part.name async for part in reader.parts()]
    assert names == ["title", "artist_id", "file"]


async def test_limits_and_malformed_bodies_are_client_errors():
    body, content_type = encoded(file=("a.bin", b"x", "application/octet-stream"))
    with pytest.raises(PayloadTooLarge):
        await read_all(MultipartReader(request_for(body, content_type, 4096), field_max_bytes=3))
    with pytest.raises(InvalidInput):
        MultipartReader(request_for(body, "application/json", 4096), field_max_bytes=100)
    with pytest.raises(InvalidInput):  # cut off in the middle of the file part
        await read_all(MultipartReader(request_for(body[: len(body) // 2], content_type, 4096), field_max_bytes=100))
    too_many = httpx.Request("POST", "http://x/", files=[("f", ("a", b"1"))] * 40)
    with pytest.raises(InvalidInput, match="more than"):
        await read_all(MultipartReader(request_for(too_many.read(), too_many.headers["content-type"], 4096),
                                       field_max_bytes=100))
