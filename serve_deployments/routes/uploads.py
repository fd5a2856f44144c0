"""Resumable uploads: tus 1.0 (core, creation, creation-with-upload, termination, expiration) at ``/v1/uploads``.

The protocol spoken by Uppy, tus-js-client and tuspy. ``POST`` announces a track's audio with
``Upload-Length`` and ``Upload-Metadata`` (``title``, ``artist_id``, optional ``album_id``, ``genre``;
``filename``/``filetype`` are kept for reference): size limit and ownership are checked before any
byte arrives. ``PATCH`` appends at the offset ``HEAD`` reports; the append that completes the upload
runs the multipart route's use case (decode check, track, job) and answers where the track is, in
``Location`` and ``X-Track-Id``. ``DELETE`` ends an upload and removes its bytes. Uploads are their
creator's alone (404 for anyone else); unfinished ones expire (``Upload-Expires``).

A body cut short (the client went away, or sent nothing for half the lease) ends quietly: what
arrived is stored and counted, so the client resumes from there. ``audio/resumable.py`` holds the rules.
"""

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from ray.exceptions import TaskCancelledError
from starlette.requests import ClientDisconnect

from audio import resumable
from audio.service import UploadFields
from serve_deployments import tus
from serve_deployments.deps import Ctx, CurrentUser
from serve_deployments.schemas import UploadIn, validated
from serve_deployments.transcoding import start_job
from verseflow.errors import DomainError, MalformedRequest
from verseflow.storage import object_store

router = APIRouter(prefix="/v1/uploads", tags=["uploads"], route_class=tus.TusRoute)

#: The app-wide body limit is lifted here: appends are bounded by what the upload still lacks.
_UNBOUNDED = 1 << 50
#: Metadata kept beside the track's fields (tus-js-client's and Uppy's names for the file).
_FILE_KEYS = ("filename", "filetype", "name", "type")

_TUS_HEADER = Annotated[str | None, Header(alias="Tus-Resumable", description="must be 1.0.0")]
_BODY = {"requestBody": {"content": {tus.OFFSET_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}}}


@router.options("", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def capabilities(ctx: Ctx) -> Response:
    """What this tus server supports (no authentication: clients ask before they upload)."""
    return Response(status_code=204, headers={"Tus-Version": tus.VERSION, "Tus-Extension": tus.EXTENSIONS,
                                              "Tus-Max-Size": str(ctx.settings.upload_max_bytes)})


@router.post("", status_code=status.HTTP_201_CREATED, response_class=Response, max_body_size=_UNBOUNDED,
             openapi_extra=_BODY)
async def create_upload(request: Request, ctx: Ctx, who: CurrentUser,
                        upload_length: Annotated[str | None, Header()] = None,
                        upload_metadata: Annotated[str | None, Header()] = None,
                        upload_defer_length: Annotated[str | None, Header(include_in_schema=False)] = None,
                        tus_resumable: _TUS_HEADER = None) -> Response:
    """Announce an upload (``Upload-Length``, ``Upload-Metadata``); with a body, its first bytes too."""
    if upload_defer_length is not None:
        raise MalformedRequest("Upload-Defer-Length is not supported: send Upload-Length")
    length = tus.integer_header("Upload-Length", upload_length)
    if length is None:
        raise MalformedRequest("Upload-Length is required")
    metadata = tus.parse_metadata(upload_metadata or "", max_bytes=ctx.settings.upload_field_max_bytes)
    fields = validated(UploadIn, {k: v for k, v in metadata.items() if k in UploadIn.model_fields})
    upload = await resumable.create(
        ctx.pool, ctx.settings, who, length=length, fields=UploadFields(**fields.model_dump()),
        raw_metadata=upload_metadata or "", file={k: metadata[k][:300] for k in _FILE_KEYS if k in metadata})
    if _has_body(request):  # creation-with-upload: the first bytes come with the announcement
        try:
            upload = await _append(request, ctx, who, upload.id, offset=0)
        except DomainError:
            with contextlib.suppress(DomainError):  # nothing half-made stays (a refused audio is gone already)
                await resumable.terminate(ctx.pool, object_store(ctx.settings), who, upload.id)
            raise
    location = f"{request.scope.get('root_path', '')}{router.prefix}/{upload.id}"
    return Response(status_code=201, headers={**_state(upload), "Location": location})


@router.head("/{upload_id}", response_class=Response)
async def upload_status(upload_id: uuid.UUID, ctx: Ctx, who: CurrentUser,
                        tus_resumable: _TUS_HEADER = None) -> Response:
    """The offset to resume from; a finished upload also says where its track is."""
    upload = await resumable.status(ctx.pool, who, upload_id)
    headers = {**_state(upload), "Upload-Length": str(upload.length), "Cache-Control": "no-store"}
    if upload.raw_metadata:
        headers["Upload-Metadata"] = upload.raw_metadata
    return Response(status_code=200, headers=headers)


@router.patch("/{upload_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
              max_body_size=_UNBOUNDED, openapi_extra=_BODY)
async def append_to_upload(request: Request, upload_id: uuid.UUID, ctx: Ctx, who: CurrentUser,
                           upload_offset: Annotated[str | None, Header()] = None,
                           tus_resumable: _TUS_HEADER = None) -> Response:
    """Bytes at ``Upload-Offset`` (``Content-Type: application/offset+octet-stream``)."""
    offset = tus.integer_header("Upload-Offset", upload_offset)
    if offset is None:
        raise MalformedRequest("Upload-Offset is required")
    return Response(status_code=204, headers=_state(await _append(request, ctx, who, upload_id, offset=offset)))


@router.delete("/{upload_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def terminate_upload(upload_id: uuid.UUID, ctx: Ctx, who: CurrentUser,
                           tus_resumable: _TUS_HEADER = None) -> Response:
    """End the upload and remove its bytes (a track it already became stays)."""
    await resumable.terminate(ctx.pool, object_store(ctx.settings), who, upload_id)
    return Response(status_code=204)


async def _append(request: Request, ctx: Ctx, who: CurrentUser, upload_id: uuid.UUID, *,
                  offset: int) -> resumable.ResumableUpload:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != tus.OFFSET_CONTENT_TYPE:
        raise UnsupportedMediaType(f"send the bytes as Content-Type: {tus.OFFSET_CONTENT_TYPE}")
    appended = await resumable.append(
        ctx.pool, object_store(ctx.settings), ctx.settings, who, upload_id, offset=offset,
        declared=tus.integer_header("Content-Length", request.headers.get("content-length")),
        body=_received(request, idle_s=ctx.settings.resumable_lease_s / 2),
        on_complete=functools.partial(start_job, ctx.settings))
    return appended.upload


def _state(upload: resumable.ResumableUpload) -> dict[str, str]:
    """``Upload-Offset``, then ``Upload-Expires`` while unfinished or where the finished track is."""
    headers = {"Upload-Offset": str(upload.offset)}
    if upload.completed:
        headers |= {"Location": f"/v1/tracks/{upload.track_id}", "X-Track-Id": str(upload.track_id)}
    else:
        headers["Upload-Expires"] = tus.http_date(upload.expires_at)
    return headers


async def _received(request: Request, *, idle_s: float) -> AsyncIterator[bytes]:
    """The body as it arrives; ends early, without error, when the client leaves or falls silent.

    Under Serve a client that leaves shows up in one of three ways, and each ends the body the same
    way: an ``http.disconnect`` (``ClientDisconnect``), a cancellation of the request
    (``resumable.append`` handles that), or ``TaskCancelledError`` from the Ray call that fetches the
    next body message from the proxy, which the proxy cancelled. Ending the body keeps what arrived."""
    stream = request.stream()
    while True:
        try:
            async with asyncio.timeout(idle_s):
                chunk = await anext(stream)
        except (StopAsyncIteration, ClientDisconnect, TaskCancelledError, TimeoutError):
            return
        if chunk:
            yield chunk


def _has_body(request: Request) -> bool:
    return request.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in request.headers


class UnsupportedMediaType(DomainError):
    status, title = 415, "Unsupported media type"
