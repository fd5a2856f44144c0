"""The library (``/v1/me/library/tracks``), the home feed, similar tracks and training the model on demand.

Thin: the library is ``catalog.library``, recommendations are ``ml.recommend`` searching the
``RecShard`` actors (``actors/rec_shard.py``) when Ray runs, training is
``ml.training`` run as a Ray task by ``actors/rec_training.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status

from accounts.model import Role
from actors.rec_shard import serving_index
from catalog import library
from ml import breakouts, recommend, training, trending
from serve_deployments.deps import Ctx, CurrentUser, OptionalUser, Paging
from serve_deployments.schemas import (
    BreakoutsOut,
    ModelVersionOut,
    RecommendationsOut,
    SavedOut,
    SavedTrackOut,
    SimilarOut,
    TrainingOut,
    TrendingOut,
)
from verseflow.errors import Forbidden, NotFound
from verseflow.settings import Settings
from verseflow.storage import object_store

router = APIRouter(prefix="/v1", tags=["recommendations"])

recommend.use_index(serving_index)  # the RecShard actors whenever this process runs under Ray

Limit = Annotated[int, Query(ge=1, description="items wanted (at most VERSEFLOW_REC_LIMIT_MAX)")]


@router.put("/me/library/tracks/{track_id}", response_model=SavedOut)
async def save_track(track_id: uuid.UUID, ctx: Ctx, who: CurrentUser):
    """Save a published track (a Subsonic star on it is the same thing); idempotent."""
    return {"saved": True, "changed": await library.save_track(ctx.pool, who, track_id)}


@router.delete("/me/library/tracks/{track_id}", response_model=SavedOut)
async def unsave_track(track_id: uuid.UUID, ctx: Ctx, who: CurrentUser):
    """Remove a track from the library; idempotent."""
    return {"saved": False, "changed": await library.unsave_track(ctx.pool, who, track_id)}


@router.get("/me/library/tracks", response_model=list[SavedTrackOut])
async def saved_tracks(ctx: Ctx, who: CurrentUser, paging: Paging):
    return await library.saved_tracks(ctx.pool, who, limit=paging.limit, offset=paging.offset)


@router.get("/me/recommendations", response_model=RecommendationsOut)
async def my_recommendations(ctx: Ctx, who: CurrentUser, limit: Limit = 20):
    """The home feed: tracks the listener has not played, skipped or saved, each with a reason."""
    return await recommend.recommendations(ctx.pool, object_store(ctx.settings), ctx.settings, who, limit)


@router.get("/tracks/{track_id}/similar", response_model=SimilarOut)
async def similar_tracks(track_id: uuid.UUID, ctx: Ctx, who: OptionalUser, limit: Limit = 20):
    return await recommend.similar_tracks(ctx.pool, object_store(ctx.settings), ctx.settings, who, track_id, limit)


@router.get("/radio", response_model=SimilarOut)
async def radio(ctx: Ctx, who: CurrentUser,
                seed_track: Annotated[uuid.UUID, Query(description="the track to start from")], limit: Limit = 20):
    """A queue from a track: its neighbourhood in an order that flows (tempo, loudness), no artist twice
    in a row, without the tracks the listener skips."""
    return await recommend.radio(ctx.pool, object_store(ctx.settings), ctx.settings, who, seed_track, limit)


@router.get("/discovery/breakouts", response_model=BreakoutsOut)
async def breakout_artists(ctx: Ctx, who: CurrentUser, window: Literal["24h", "7d"] = "7d", limit: Limit = 20):
    """Artists whose unique listeners grow fastest against their own baseline (artists and admins)."""
    if who.role not in (Role.ARTIST, Role.ADMIN):
        raise Forbidden("breakouts are for artists and administrators")
    return {"window": window, "items": await breakouts.breakouts(ctx.pool, ctx.settings, window=window, limit=limit)}


@router.get("/charts/trending", response_model=TrendingOut)
async def trending_tracks(ctx: Ctx, window: Literal["24h", "7d"] = "24h",
                          genre: Annotated[str | None,
                                           Query(min_length=1, max_length=100, pattern=r"^[^\x00]+$")] = None,
                          limit: Limit = 20):
    """Tracks whose unique listeners grow fastest against their previous window (not raw play totals)."""
    items = await trending.trending(ctx.pool, ctx.settings, window=window, genre=genre, limit=limit)
    return {"window": window, "genre": genre, "items": items}


@router.post("/admin/recommendations/train", status_code=status.HTTP_202_ACCEPTED, response_model=TrainingOut)
async def train(ctx: Ctx, who: CurrentUser):
    """Start a training run (a Ray task); answers at once with the version it will produce."""
    if not who.is_admin:
        raise Forbidden("only administrators can train the recommendation model")
    version = await training.request_version(ctx.pool, "api")
    await asyncio.to_thread(_launch, ctx.settings, version)
    return {"version": version, "state": "training"}


@router.get("/admin/recommendations/models/{version}", response_model=ModelVersionOut)
async def model_version(version: Annotated[int, Path(ge=1, le=2**63 - 1)], ctx: Ctx, who: CurrentUser):
    if not who.is_admin:
        raise Forbidden("only administrators can see model versions")
    info = await training.version_info(ctx.pool, version)
    if info is None:
        raise NotFound("no such model version")
    return info


def _launch(settings: Settings, version: int) -> None:
    from actors.rec_training import launch  # Ray only where a run is launched, not at import

    launch(settings, version)
