"""Playlists: ordered entries, visibility, collaborators, follows."""

import uuid

from fastapi import APIRouter, Response, status

from catalog import playlists
from serve_deployments.deps import Ctx, CurrentUser, OptionalUser, Paging
from serve_deployments.schemas import (
    EntryOut,
    PlaylistIn,
    PlaylistMoveIn,
    PlaylistOut,
    PlaylistSummaryOut,
    PlaylistTrackIn,
    PlaylistUpdateIn,
)

router = APIRouter(prefix="/v1", tags=["playlists"])
NO_CONTENT = {"status_code": status.HTTP_204_NO_CONTENT, "response_class": Response}


@router.post("/playlists", status_code=status.HTTP_201_CREATED, response_model=PlaylistOut)
async def create_playlist(body: PlaylistIn, ctx: Ctx, who: CurrentUser):
    return await playlists.create_playlist(ctx.pool, who, **body.model_dump())


@router.get("/me/playlists", response_model=list[PlaylistSummaryOut])
async def my_playlists(ctx: Ctx, who: CurrentUser, paging: Paging):
    """Playlists the caller owns, collaborates on or follows."""
    return await playlists.list_playlists_of(ctx.pool, who, limit=paging.limit, offset=paging.offset)


@router.get("/playlists/{playlist_id}", response_model=PlaylistOut)
async def read_playlist(playlist_id: uuid.UUID, ctx: Ctx, who: OptionalUser):
    """A playlist with its ordered tracks; private playlists are 404 to anyone but members."""
    return await playlists.get_playlist(ctx.pool, who, playlist_id)


@router.patch("/playlists/{playlist_id}", response_model=PlaylistOut)
async def update_playlist(playlist_id: uuid.UUID, body: PlaylistUpdateIn, ctx: Ctx, who: CurrentUser):
    return await playlists.update_playlist(ctx.pool, who, playlist_id, body.model_dump(exclude_unset=True))


@router.delete("/playlists/{playlist_id}", **NO_CONTENT)
async def delete_playlist(playlist_id: uuid.UUID, ctx: Ctx, who: CurrentUser) -> None:
    await playlists.delete_playlist(ctx.pool, who, playlist_id)


@router.post("/playlists/{playlist_id}/tracks", status_code=status.HTTP_201_CREATED, response_model=EntryOut)
async def add_track(playlist_id: uuid.UUID, body: PlaylistTrackIn, ctx: Ctx, who: CurrentUser):
    """Insert a track at ``position`` (default: the end); later entries shift down."""
    return await playlists.add_track(ctx.pool, who, playlist_id, track_id=body.track_id, position=body.position)


@router.patch("/playlists/{playlist_id}/tracks/{entry_id}", response_model=EntryOut)
async def move_track(playlist_id: uuid.UUID, entry_id: uuid.UUID, body: PlaylistMoveIn, ctx: Ctx, who: CurrentUser):
    return await playlists.move_entry(ctx.pool, who, playlist_id, entry_id, position=body.position)


@router.delete("/playlists/{playlist_id}/tracks/{entry_id}", **NO_CONTENT)
async def remove_track(playlist_id: uuid.UUID, entry_id: uuid.UUID, ctx: Ctx, who: CurrentUser) -> None:
    await playlists.remove_entry(ctx.pool, who, playlist_id, entry_id)


@router.put("/playlists/{playlist_id}/collaborators/{user_id}", **NO_CONTENT)
async def add_collaborator(playlist_id: uuid.UUID, user_id: uuid.UUID, ctx: Ctx, who: CurrentUser) -> None:
    await playlists.set_collaborator(ctx.pool, who, playlist_id, user_id, present=True)


@router.delete("/playlists/{playlist_id}/collaborators/{user_id}", **NO_CONTENT)
async def remove_collaborator(playlist_id: uuid.UUID, user_id: uuid.UUID, ctx: Ctx, who: CurrentUser) -> None:
    await playlists.set_collaborator(ctx.pool, who, playlist_id, user_id, present=False)


@router.put("/playlists/{playlist_id}/follow", **NO_CONTENT)
async def follow(playlist_id: uuid.UUID, ctx: Ctx, who: CurrentUser) -> None:
    await playlists.set_follow(ctx.pool, who, playlist_id, following=True)


@router.delete("/playlists/{playlist_id}/follow", **NO_CONTENT)
async def unfollow(playlist_id: uuid.UUID, ctx: Ctx, who: CurrentUser) -> None:
    await playlists.set_follow(ctx.pool, who, playlist_id, following=False)
