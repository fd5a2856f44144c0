"""Tracks (metadata; the audio issue adds multipart upload on the same route)."""

import uuid

from fastapi import APIRouter, Response, status

from catalog import tracks
from serve_deployments.deps import Ctx, CurrentUser
from serve_deployments.schemas import TrackIn, TrackOut, TrackUpdateIn

router = APIRouter(prefix="/v1/tracks", tags=["catalog"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TrackOut)
async def create_track(body: TrackIn, ctx: Ctx, who: CurrentUser):
    """A metadata-only track; only the artist's owner may add it."""
    return await tracks.create_track(ctx.pool, who, **body.model_dump())


@router.get("/{track_id}", response_model=TrackOut)
async def read_track(track_id: uuid.UUID, ctx: Ctx):
    return await tracks.get_track(ctx.pool, track_id)


@router.patch("/{track_id}", response_model=TrackOut)
async def update_track(track_id: uuid.UUID, body: TrackUpdateIn, ctx: Ctx, who: CurrentUser):
    return await tracks.update_track(ctx.pool, who, track_id, body.model_dump(exclude_unset=True))


@router.delete("/{track_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_track(track_id: uuid.UUID, ctx: Ctx, who: CurrentUser) -> None:
    await tracks.delete_track(ctx.pool, who, track_id)
