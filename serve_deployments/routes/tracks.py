"""Tracks: metadata (JSON) or an audio upload (multipart) on the same route, then what processing found.

``POST /v1/tracks`` with JSON makes a metadata-only track (201). With ``multipart/form-data`` the
``file`` part streams straight into the object store under the upload limit, the content is judged
by decoding its start (``audio/decode.py``), and the track is answered 202 ``processing`` while a
``TranscodeJob`` actor does the rest; ``GET /v1/tracks/{id}`` follows it to ``ready``.
"""

import uuid
from typing import Annotated, Any

import ray
from fastapi import APIRouter, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, JSONResponse

from actors.fingerprint_shard import catalogue
from audio import service
from catalog import tracks
from serve_deployments.deps import Ctx, CurrentUser, OptionalUser
from serve_deployments.multipart import MultipartReader
from serve_deployments.objects import serve_object
from serve_deployments.schemas import (
    TrackDetailOut,
    TrackIn,
    TrackOut,
    TrackUpdateIn,
    UploadIn,
    UploadOut,
    validated,
)
from serve_deployments.transcoding import start_job
from verseflow.errors import InvalidInput, PayloadTooLarge
from verseflow.settings import Settings
from verseflow.storage import object_store

router = APIRouter(prefix="/v1/tracks", tags=["catalog"])

#: The route's own body limit is lifted; each branch enforces its setting while reading.
_UNBOUNDED = 1 << 50

_TRACK_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": TrackIn.model_json_schema()},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file", "title", "artist_id"],
            "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 300},
                "artist_id": {"type": "string", "format": "uuid"},
                "album_id": {"type": "string", "format": "uuid"},
                "genre": {"type": "string", "maxLength": 100},
                "file": {"type": "string", "format": "binary",
                         "description": "the audio, judged by decoding (limit: VERSEFLOW_UPLOAD_MAX_BYTES)"},
            },
        }},
    },
}


@router.post("", status_code=status.HTTP_201_CREATED, max_body_size=_UNBOUNDED,
             openapi_extra={"requestBody": _TRACK_BODY},
             responses={201: {"model": TrackOut, "description": "metadata-only track"},
                        202: {"model": UploadOut, "description": "upload accepted, processing"}})
async def create_track(request: Request, ctx: Ctx, who: CurrentUser) -> Any:
    """A metadata-only track (JSON), or an audio upload (multipart) processed in the background."""
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return await _upload(request, ctx, who)
    body = validated(TrackIn, await _capped_body(request, ctx.settings.max_body_bytes))
    created = await tracks.create_track(ctx.pool, who, **body.model_dump())
    return JSONResponse(jsonable_encoder(TrackOut.model_validate(created)), status_code=201)


@router.get("/{track_id}", response_model=TrackDetailOut)
async def read_track(track_id: uuid.UUID, ctx: Ctx, who: OptionalUser):
    """Status, analysis, matches, job progress (owner) and signed stream links (signed-in users)."""
    return await service.track_view(ctx.pool, ctx.settings, who, track_id)


@router.get("/{track_id}/waveform", response_class=FileResponse,
            responses={200: {"content": {"application/json": {}},
                             "description": "audiowaveform JSON v2 (8-bit) at `zoom` samples per pixel"}})
async def read_waveform(track_id: uuid.UUID, ctx: Ctx, who: OptionalUser,
                        zoom: Annotated[int, Query(ge=1, le=1 << 20)] = 256):
    key = await service.waveform_key(ctx.pool, who, track_id, zoom)
    return serve_object(object_store(ctx.settings), key, "application/json",
                        {"Cache-Control": "public, max-age=86400"}, expires_s=3600)


@router.patch("/{track_id}", response_model=TrackOut)
async def update_track(track_id: uuid.UUID, body: TrackUpdateIn, ctx: Ctx, who: CurrentUser):
    return await tracks.update_track(ctx.pool, who, track_id, body.model_dump(exclude_unset=True))


@router.delete("/{track_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_track(track_id: uuid.UUID, ctx: Ctx, who: CurrentUser) -> None:
    await tracks.delete_track(ctx.pool, who, track_id)
    await remove_from_catalogue(ctx.settings, track_id)


async def remove_from_catalogue(settings: Settings, track_id: uuid.UUID) -> None:
    """A deleted track leaves the fingerprint shards' index at once.

    Without Ray (the API alone, in tests) there are no shards to tell; and should this call be lost,
    identification still skips tracks no longer published and a reloading shard never loads them.
    """
    if ray.is_initialized():
        await catalogue(settings).remove(str(track_id))


async def _upload(request: Request, ctx: Ctx, who: CurrentUser) -> JSONResponse:
    settings, store = ctx.settings, object_store(ctx.settings)
    track_id = uuid.uuid4()
    key = service.source_key(track_id)
    reader = MultipartReader(request, field_max_bytes=settings.upload_field_max_bytes)
    fields: dict[str, str] = {}
    stored = None
    try:
        async for part in reader.parts():
            if part.name == "file" and stored is None:
                if (artist_id := _uuid_or_none(fields.get("artist_id"))) is not None:
                    await service.authorize_upload(ctx.pool, who, artist_id)  # before the bytes arrive
                stored = await store.put_stream(key, reader.chunks(), max_bytes=settings.upload_max_bytes)
            elif part.name in UploadIn.model_fields and part.name not in fields:
                fields[part.name] = await reader.value()
            else:
                raise InvalidInput(f"unexpected form part {part.name!r}")
        if stored is None:
            raise InvalidInput("the upload has no `file` part")
        upload = service.UploadFields(**validated(UploadIn, fields).model_dump())
        info = await service.accept_upload(ctx.pool, store, settings, who, track_id, upload, stored)
    except BaseException:
        store.delete_prefix(service.source_prefix(track_id))
        raise
    await start_job(settings, track_id)
    body = UploadOut(id=track_id, status="processing", bytes=stored.size, sha256=stored.sha256,
                     source={"container": info.container, "codec": info.codec, "rate": info.rate,
                             "channels": info.channels, "duration_s": info.duration_s})
    return JSONResponse(jsonable_encoder(body), status_code=202, headers={"Location": f"/v1/tracks/{track_id}"})


def _uuid_or_none(text: str | None) -> uuid.UUID | None:
    """A field's UUID if it is one; a malformed one is reported by the full validation later."""
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


async def _capped_body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    return bytes(body)
