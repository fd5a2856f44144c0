"""``POST /v1/fingerprint/identify``: which published track a clip comes from, and where in it."""

import asyncio
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request

from actors.fingerprint_shard import catalogue
from audio import service
from serve_deployments.deps import Ctx, CurrentUser
from serve_deployments.multipart import MultipartReader
from serve_deployments.schemas import IdentifyOut
from verseflow import ratelimit
from verseflow.errors import InvalidInput
from verseflow.storage import LocalObjectStore, object_store

router = APIRouter(prefix="/v1/fingerprint", tags=["audio"])

_CLIP_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "a clip of 5 to 60 s, give or take VERSEFLOW_IDENTIFY_CLIP_TOLERANCE_S "
                                           "(0.1 s) for codec rounding"}}}}}}


@router.post("/identify", response_model=IdentifyOut, max_body_size=1 << 50,
             openapi_extra={"requestBody": _CLIP_BODY})
async def identify(request: Request, ctx: Ctx, who: CurrentUser):
    """The best-matching track and the clip's offset in it; ``match: null`` when nothing matches.

    Robust to noise, lossy re-encoding and speed changes of ±3 % (``audio/fingerprint.py``); searched
    in the ``FingerprintShard`` actors' in-memory index (``actors/fingerprint_shard.py``).
    """
    settings = ctx.settings
    await ratelimit.hit(ctx.redis, f"{settings.redis_prefix}identify:{who.user_id}",
                        limit=settings.identify_per_minute, window_s=60)
    with tempfile.TemporaryDirectory(dir=object_store(settings).staging_dir()) as scratch:
        clip_path = await _receive_clip(request, ctx, LocalObjectStore(Path(scratch)))
        clip = await asyncio.to_thread(service.clip_fingerprint, clip_path, min_s=settings.identify_min_clip_s,
                                       max_s=settings.identify_max_clip_s,
                                       tolerance_s=settings.identify_clip_tolerance_s)
    candidates = await service.identify(ctx.pool, catalogue(settings), clip,
                                        min_matches=settings.fingerprint_min_matches)
    return {"match": candidates[0] if candidates else None, "candidates": candidates}


async def _receive_clip(request: Request, ctx: Ctx, scratch: LocalObjectStore) -> Path:
    """The ``file`` part, written to ``scratch`` under the identify size limit."""
    reader = MultipartReader(request, field_max_bytes=ctx.settings.upload_field_max_bytes)
    stored = None
    async for part in reader.parts():
        if part.name != "file" or stored is not None:
            raise InvalidInput(f"unexpected form part {part.name!r}")
        stored = await scratch.put_stream("clip", reader.chunks(), max_bytes=ctx.settings.identify_max_bytes)
    if stored is None:
        raise InvalidInput("the request has no `file` part")
    return scratch.local_path(stored.key)
