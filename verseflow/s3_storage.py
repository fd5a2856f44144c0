"""The object store on any S3-compatible service (AWS S3, MinIO, Ceph, R2...), with boto3.

Same protocol as ``LocalObjectStore``, plus what object storage does better: media is handed to
clients by short-lived presigned URLs (the service answers ``Range`` itself), so the media
deployment only checks the grant and redirects. Jobs and upload checks need real files (FFmpeg reads
paths), so a local cache under ``storage_dir`` holds what was uploaded or read here; an upload goes
to the cache first (with the size limit and the digest), then to the bucket, where boto3 switches to
multipart transfers for large files. ``put_dir`` uploads a finished folder file by file: unlike a
rename it is not atomic, which is why publication is a database pointer flip after it (audio/jobs.py).
Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``..., an instance role).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterable, Iterator
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from verseflow.errors import NotFound
from verseflow.storage import LocalObjectStore, StoredObject, check_key, concatenate


class S3ObjectStore:
    """Objects in ``bucket``; a local cache for the files that must be read from disk."""

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, region: str | None = None,
                 cache_dir: Path) -> None:
        self.bucket = bucket
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                                   config=Config(signature_version="s3v4", retries={"mode": "standard"}))
        self.cache = LocalObjectStore(cache_dir)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int) -> StoredObject:
        stored = await self.cache.put_stream(key, chunks, max_bytes=max_bytes)
        await asyncio.to_thread(self.client.upload_file, str(self.cache.local_path(key)), self.bucket, key)
        return stored

    def put_file(self, key: str, source: Path) -> StoredObject:
        stored = self.cache.put_file(key, source)
        self.client.upload_file(str(self.cache.local_path(key)), self.bucket, check_key(key))
        return stored

    def compose(self, key: str, parts: list[str]) -> StoredObject:
        """Concatenate ``parts`` into one object. S3 cannot append, and its server-side multipart copy
        needs every piece but the last to be 5 MiB or more (resumable clients send any size), so the
        pieces are joined in the local cache (downloading those another node received) and the result
        is uploaded like any other file."""
        stored = concatenate(self.cache.root / check_key(key), [self.local_path(part) for part in parts], key)
        self.client.upload_file(str(self.cache.local_path(key)), self.bucket, key)
        return stored

    def local_path(self, key: str) -> Path:
        """A local copy (downloaded once into the cache)."""
        try:
            return self.cache.local_path(key)
        except NotFound:
            pass
        target = self.cache.root / check_key(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
        os.close(fd)
        try:
            self.client.download_file(self.bucket, key, name)
            os.replace(name, target)
        except ClientError as exc:
            raise _not_found(exc, key) from None
        finally:
            Path(name).unlink(missing_ok=True)
        return target

    def size(self, key: str) -> int:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=check_key(key))["ContentLength"])
        except ClientError as exc:
            raise _not_found(exc, key) from None

    def read_range(self, key: str, start: int, end: int, chunk: int = 65536) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=check_key(key), Range=f"bytes={start}-{end}")["Body"]
        except ClientError as exc:
            raise _not_found(exc, key) from None
        yield from body.iter_chunks(chunk)

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"].read()
        except ClientError as exc:
            raise _not_found(exc, key) from None

    def delete_prefix(self, prefix: str) -> int:
        keys = [item["Key"] for page in self._pages(check_key(prefix) + "/") for item in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        self.cache.delete_prefix(prefix)
        return len(keys)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=check_key(key))
        self.cache.delete(key)

    def staging_dir(self) -> Path:
        return self.cache.staging_dir()

    def put_dir(self, prefix: str, folder: Path) -> None:
        """Upload every file of ``folder`` under ``prefix``, then drop the local folder."""
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = f"{check_key(prefix)}/{path.relative_to(folder).as_posix()}"
            self.client.upload_file(str(path), self.bucket, check_key(key))
        shutil.rmtree(folder)

    def children(self, prefix: str) -> list[str]:
        base = check_key(prefix) + "/"
        names: set[str] = set()
        for page in self._pages(base, delimiter="/"):
            names |= {p["Prefix"][len(base):].rstrip("/") for p in page.get("CommonPrefixes", [])}
            names |= {item["Key"][len(base):] for item in page.get("Contents", [])}
        return sorted(names)

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": check_key(key)}, ExpiresIn=max(1, expires_s))

    def _pages(self, prefix: str, delimiter: str | None = None) -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        options = {"Bucket": self.bucket, "Prefix": prefix, **({"Delimiter": delimiter} if delimiter else {})}
        yield from paginator.paginate(**options)


def _not_found(exc: ClientError, key: str) -> Exception:
    code = exc.response.get("Error", {}).get("Code", "")
    if code in ("404", "NoSuchKey", "NotFound"):
        return NotFound(f"no object {key}")
    return exc
