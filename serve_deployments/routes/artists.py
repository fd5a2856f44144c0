"""Artists and albums."""

import uuid

from fastapi import APIRouter, status

from catalog import artists, tracks
from serve_deployments.deps import Ctx, CurrentUser, Paging
from serve_deployments.schemas import (
    AlbumIn,
    AlbumOut,
    AlbumUpdateIn,
    ArtistIn,
    ArtistOut,
    ArtistUpdateIn,
    TrackOut,
)

router = APIRouter(prefix="/v1", tags=["catalog"])


@router.post("/artists", status_code=status.HTTP_201_CREATED, response_model=ArtistOut)
async def create_artist(body: ArtistIn, ctx: Ctx, who: CurrentUser):
    """Artist accounts create the artists they manage; listeners get 403."""
    return await artists.create_artist(ctx.pool, who, name=body.name, bio=body.bio)


@router.get("/me/artists", response_model=list[ArtistOut])
async def my_artists(ctx: Ctx, who: CurrentUser):
    """The artists the caller manages (none for a listener)."""
    return await artists.list_owned_artists(ctx.pool, who)


@router.get("/artists/{artist_id}", response_model=ArtistOut)
async def read_artist(artist_id: uuid.UUID, ctx: Ctx):
    return await artists.get_artist(ctx.pool, artist_id)


@router.patch("/artists/{artist_id}", response_model=ArtistOut)
async def update_artist(artist_id: uuid.UUID, body: ArtistUpdateIn, ctx: Ctx, who: CurrentUser):
    return await artists.update_artist(ctx.pool, who, artist_id, body.model_dump(exclude_unset=True))


@router.get("/artists/{artist_id}/tracks", response_model=list[TrackOut])
async def artist_tracks(artist_id: uuid.UUID, ctx: Ctx, paging: Paging):
    await artists.get_artist(ctx.pool, artist_id)
    return await tracks.list_artist_tracks(ctx.pool, artist_id, limit=paging.limit, offset=paging.offset)


@router.get("/artists/{artist_id}/albums", response_model=list[AlbumOut])
async def artist_albums(artist_id: uuid.UUID, ctx: Ctx):
    return await artists.list_artist_albums(ctx.pool, artist_id)


@router.post("/albums", status_code=status.HTTP_201_CREATED, response_model=AlbumOut)
async def create_album(body: AlbumIn, ctx: Ctx, who: CurrentUser):
    return await artists.create_album(ctx.pool, who, artist_id=body.artist_id, title=body.title,
                                      release_date=body.release_date)


@router.get("/albums/{album_id}", response_model=AlbumOut)
async def read_album(album_id: uuid.UUID, ctx: Ctx):
    return await artists.get_album(ctx.pool, album_id)


@router.patch("/albums/{album_id}", response_model=AlbumOut)
async def update_album(album_id: uuid.UUID, body: AlbumUpdateIn, ctx: Ctx, who: CurrentUser):
    await artists.update_album(ctx.pool, who, album_id, body.model_dump(exclude_unset=True))
    return await artists.get_album(ctx.pool, album_id)
