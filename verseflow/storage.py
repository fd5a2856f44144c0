"""The object store: where uploads and rendered media live, behind one small interface.

``LocalObjectStore`` keeps objects as files under ``VERSEFLOW_STORAGE_DIR`` (``./var/media``), the
default on a laptop; ``verseflow/s3_storage.py``'s ``S3ObjectStore`` implements the same protocol on
any S3-compatible service for a cluster (``VERSEFLOW_STORAGE_BACKEND=s3``). Writes are
atomic (a temporary file renamed into place), so a reader, or a job retried after a crash, never
sees half an object; a stream over its size limit is refused and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Protocol

from verseflow.errors import InvalidInput, NotFound, PayloadTooLarge
from verseflow.settings import Settings

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


class ObjectStore(Protocol):
    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int) -> StoredObject: ...
    def put_file(self, key: str, source: Path) -> StoredObject: ...
    def compose(self, key: str, parts: list[str]) -> StoredObject: ...
    def local_path(self, key: str) -> Path: ...
    def size(self, key: str) -> int: ...
    def read_range(self, key: str, start: int, end: int, chunk: int = 65536) -> Iterator[bytes]: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def delete(self, key: str) -> None: ...
    def staging_dir(self) -> Path: ...
    def put_dir(self, prefix: str, folder: Path) -> None: ...
    def children(self, prefix: str) -> list[str]: ...
    def read_bytes(self, key: str) -> bytes: ...
    def presigned_url(self, key: str, expires_s: int) -> str | None: ...


def check_key(key: str) -> str:
    """Keys are relative, slash-separated names: no '..', no absolute paths, no hidden files."""
    if len(key) > 512 or not _KEY.match(key) or ".." in key.split("/"):
        raise InvalidInput(f"invalid object key {key!r}")
    return key


class LocalObjectStore:
    """Objects as files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int) -> StoredObject:
        target = self._path(key)
        digest = hashlib.sha256()
        size = 0
        with _temporary_beside(target) as (handle, temporary):
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"upload larger than {max_bytes} bytes")
                digest.update(chunk)
                handle.write(chunk)
            _commit(handle, temporary, target)
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def put_file(self, key: str, source: Path) -> StoredObject:
        return concatenate(self._path(key), [source], key)

    def compose(self, key: str, parts: list[str]) -> StoredObject:
        """One object made of ``parts`` end to end (a resumable upload's pieces), written atomically.

        A single part (an upload sent in one request) is moved, not copied: the part is gone after."""
        sources = [self.local_path(part) for part in parts]
        if len(sources) != 1:
            return concatenate(self._path(key), sources, key)
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(sources[0], target)
        digest = hashlib.sha256()
        with target.open("rb") as reader:
            while block := reader.read(1 << 20):
                digest.update(block)
        return StoredObject(key=key, size=target.stat().st_size, sha256=digest.hexdigest())

    def local_path(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"no object {key}")
        return path

    def size(self, key: str) -> int:
        return self.local_path(key).stat().st_size

    def read_range(self, key: str, start: int, end: int, chunk: int = 65536) -> Iterator[bytes]:
        """Bytes ``start..end`` inclusive, as HTTP ranges count them."""
        with self.local_path(key).open("rb") as reader:
            reader.seek(start)
            left = end - start + 1
            while left > 0 and (block := reader.read(min(chunk, left))):
                left -= len(block)
                yield block

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix/``; returns how many files went."""
        folder = self._path(prefix)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder)
        return count

    def delete(self, key: str) -> None:
        """Remove one object; a missing one is not an error (deletes are retried after crashes)."""
        self._path(key).unlink(missing_ok=True)

    def staging_dir(self) -> Path:
        """Where jobs build outputs before :meth:`put_dir` (same file system: the move is a rename)."""
        folder = self.root / ".staging"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def put_dir(self, prefix: str, folder: Path) -> None:
        """Move a finished folder under ``prefix`` in one step: readers see all of it or none."""
        target = self._path(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder, target)

    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix/`` (files and folders)."""
        folder = self._path(prefix)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def read_bytes(self, key: str) -> bytes:
        return self.local_path(key).read_bytes()

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        """None: local files are served by the media deployment itself."""
        return None

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)


@contextmanager
def _temporary_beside(target: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file in the target's folder (same file system, so the rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle, temporary
    finally:
        temporary.unlink(missing_ok=True)


def _commit(handle: BinaryIO, temporary: Path, target: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    os.replace(temporary, target)


def concatenate(target: Path, sources: list[Path], key: str) -> StoredObject:
    """Write ``sources`` one after the other into ``target`` (atomically, fsynced), with size and digest."""
    digest = hashlib.sha256()
    size = 0
    with _temporary_beside(target) as (handle, temporary):
        for source in sources:
            with source.open("rb") as reader:
                while block := reader.read(1 << 20):
                    digest.update(block)
                    handle.write(block)
                    size += len(block)
        _commit(handle, temporary, target)
    return StoredObject(key=key, size=size, sha256=digest.hexdigest())


def object_store(settings: Settings) -> ObjectStore:
    """The deployment's object store: the local file system, or S3 when ``storage_backend`` says so."""
    if settings.storage_backend == "s3":
        return _s3_store(settings.s3_bucket, settings.s3_endpoint_url, settings.s3_region,
                         settings.media_dir().resolve())
    return _store_at(settings.media_dir().resolve())


@lru_cache(maxsize=8)
def _store_at(root: Path) -> LocalObjectStore:
    return LocalObjectStore(root)


@lru_cache(maxsize=8)
def _s3_store(bucket: str, endpoint_url: str | None, region: str | None, cache: Path) -> ObjectStore:
    from verseflow.s3_storage import S3ObjectStore

    return S3ObjectStore(bucket, endpoint_url=endpoint_url, region=region, cache_dir=cache)
