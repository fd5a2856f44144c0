"""Answering with a stored object: the bytes from disk (with Range), or a redirect to the bucket."""

from pathlib import Path

from fastapi import Response
from fastapi.responses import FileResponse, RedirectResponse

from verseflow.storage import ObjectStore

MAX_REDIRECT_S = 86_400


def serve_object(store: ObjectStore, key: str, media_type: str, headers: dict[str, str], *,
                 expires_s: int) -> Response:
    """A stored file: from disk with Range support, or a redirect to a presigned URL of the bucket."""
    if (url := store.presigned_url(key, min(expires_s, MAX_REDIRECT_S))) is not None:  # signed locally
        return RedirectResponse(url, status_code=307, headers=headers)
    path: Path = store.local_path(key)
    return FileResponse(path, media_type=media_type, headers=headers)
