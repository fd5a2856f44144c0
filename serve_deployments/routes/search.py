"""Search (``GET /v1/search``): ranked, typo-tolerant hits across the catalog, behind the "search" flag.

The route only bounds the inputs and shapes the output; matching, ranking, visibility and the
cursor live in ``catalog.search``. Hits of tracks and albums carry a ``title`` and their artist (found
by either), hits of artists and playlists a ``name``, as the resources themselves do.
"""

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from catalog import search
from serve_deployments.deps import Ctx, OptionalUser, feature

router = APIRouter(prefix="/v1", tags=["search"])

SearchType = Literal["track", "artist", "album", "playlist"]


class NamedHit(BaseModel):
    type: Literal["artist", "playlist"]
    id: uuid.UUID
    name: str
    score: float


class TitledHit(BaseModel):
    type: Literal["track", "album"]
    id: uuid.UUID
    title: str
    artist_id: uuid.UUID
    artist_name: str = Field(description="Whose it is: tracks and albums are found by their artist's name too")
    score: float


class SearchOut(BaseModel):
    items: list[Annotated[NamedHit | TitledHit, Field(discriminator="type")]]
    next: str | None = Field(description="Opaque cursor for the next page, to send back as `cursor`; "
                                         "null on the last page")


@router.get("/search", response_model=SearchOut, dependencies=[feature("search")])
async def search_catalog(
    ctx: Ctx,
    who: OptionalUser,
    q: Annotated[str, Query(min_length=1, max_length=search.MAX_QUERY_CHARS,
                            description="Words to find; typos are forgiven, prefixes match. Tracks and "
                                        "albums are found by title and artist words together "
                                        "(\"beatles yesterday\").")],
    kind: Annotated[SearchType | None,
                    Query(alias="type", description="Only this kind; every kind when absent.")] = None,
    limit: Annotated[int | None, Query(ge=1, le=search.MAX_LIMIT)] = None,
    cursor: Annotated[str | None, Query(min_length=1, max_length=search.MAX_CURSOR_CHARS)] = None,
) -> SearchOut:
    """Best matches first. Private playlists are found only by their owner and collaborators."""
    page = await search.search(
        ctx.pool, q,
        types=frozenset({kind}) if kind else search.TYPES,
        viewer=who.user_id if who else None,
        limit=min(limit or ctx.settings.page_size_default, ctx.settings.page_size_max, search.MAX_LIMIT),
        cursor=cursor,
    )
    return SearchOut.model_validate({"items": page.items, "next": page.next})
