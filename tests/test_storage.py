"""The local object store: atomic writes, size limits, safe keys, byte ranges."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from verseflow.errors import InvalidInput, NotFound, PayloadTooLarge
from verseflow.storage import LocalObjectStore


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_put_stream_read_ranges_and_delete(tmp_path: Path):
    store = LocalObjectStore(tmp_path)
    stored = await store.put_stream("tracks/t1/original", _chunks(b"abc", b"defg"), max_bytes=100)
    assert (stored.size, stored.key) == (7, "tracks/t1/original")
    assert stored.sha256 == hashlib.sha256(b"abcdefg").hexdigest()
    assert b"".join(store.read_range("tracks/t1/original", 2, 4)) == b"cde"
    assert b"".join(store.read_range("tracks/t1/original", 0, 6, chunk=2)) == b"abcdefg"
    assert store.size("tracks/t1/original") == 7
    assert store.delete_prefix("tracks/t1") == 1
    with pytest.raises(NotFound):
        store.local_path("tracks/t1/original")


async def test_an_oversized_stream_leaves_nothing(tmp_path: Path):
    store = LocalObjectStore(tmp_path)
    with pytest.raises(PayloadTooLarge):
        await store.put_stream("big", _chunks(b"x" * 60, b"x" * 60), max_bytes=100)
    assert [p.name for p in tmp_path.rglob("*")] == []  # noqa: ASYNC240 - a test's own temporary folder


async def test_a_failed_rewrite_keeps_the_previous_object(tmp_path: Path):
    store = LocalObjectStore(tmp_path)
    await store.put_stream("a/b", _chunks(b"old"), max_bytes=10)

    async def broken() -> AsyncIterator[bytes]:
        yield b"new-partial"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await store.put_stream("a/b", broken(), max_bytes=100)
    assert store.local_path("a/b").read_bytes() == b"old"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b"]


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../b", ".hidden", "a//b", "", "a b"])
def test_unsafe_keys_are_refused(tmp_path: Path, key: str):
    with pytest.raises(InvalidInput):
        LocalObjectStore(tmp_path).local_path(key)


def test_put_file(tmp_path: Path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"\x00" * 3000)
    store = LocalObjectStore(tmp_path / "store")
    assert store.put_file("x/y.bin", source).size == 3000
    assert store.local_path("x/y.bin").read_bytes() == source.read_bytes()


async def test_compose_joins_pieces_and_delete_forgets_one(tmp_path: Path):
    store = LocalObjectStore(tmp_path)
    await store.put_stream("up/0", _chunks(b"abc"), max_bytes=10)
    await store.put_stream("up/1", _chunks(b"defg"), max_bytes=10)
    joined = store.compose("whole/source", ["up/0", "up/1"])
    assert (joined.size, joined.sha256) == (7, hashlib.sha256(b"abcdefg").hexdigest())
    assert store.read_bytes("whole/source") == b"abcdefg"
    with pytest.raises(NotFound):
        store.compose("whole/other", ["up/0", "up/missing"])
    assert store.children("whole") == ["source"]  # a failed compose leaves nothing
    store.delete("up/0")
    store.delete("up/0")
    assert store.children("up") == ["1"]
    alone = store.compose("whole/moved", ["up/1"])  # one part is moved, not copied
    assert (alone.size, alone.sha256) == (4, hashlib.sha256(b"defg").hexdigest())
    assert store.read_bytes("whole/moved") == b"defg" and store.children("up") == []
