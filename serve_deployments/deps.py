"""Request dependencies, declared once and reused through ``Annotated`` types.

``Ctx`` is what every route needs (pool, Redis, settings); ``CurrentUser`` authenticates the
bearer token, ``OptionalUser`` does so only when a token is sent. Every dependency is ``async def``,
even where it does not await: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
hop (and a wait for one of the pool's threads under load) on every request for what is an attribute
read.
"""

from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from redis.asyncio import Redis

from accounts import service as accounts
from accounts.model import Principal
from verseflow.errors import FeatureDisabled, Unauthorized
from verseflow.settings import Settings


@dataclass(frozen=True)
class Context:
    pool: asyncpg.Pool
    redis: Redis
    settings: Settings


async def get_context(request: Request) -> Context:
    return request.app.state.ctx


Ctx = Annotated[Context, Depends(get_context)]

_bearer = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


async def current_user(ctx: Ctx, token: Annotated[str | None, Depends(_bearer)]) -> Principal:
    if not token:
        raise Unauthorized("missing bearer token")
    return await accounts.authenticate(ctx.redis, ctx.settings, token)


async def optional_user(ctx: Ctx, token: Annotated[str | None, Depends(_bearer)]) -> Principal | None:
    return await accounts.authenticate(ctx.redis, ctx.settings, token) if token else None


CurrentUser = Annotated[Principal, Depends(current_user)]
OptionalUser = Annotated[Principal | None, Depends(optional_user)]


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


async def page(ctx: Ctx, limit: Annotated[int | None, Query(ge=1, le=100)] = None,
         offset: Annotated[int, Query(ge=0, le=10_000)] = 0) -> Page:
    return Page(limit=min(limit or ctx.settings.page_size_default, ctx.settings.page_size_max), offset=offset)


Paging = Annotated[Page, Depends(page)]


async def client_ip(request: Request, ctx: Ctx) -> str:
    """The caller's address; ``X-Forwarded-For`` only when the deployment says a proxy sets it."""
    if ctx.settings.trust_forwarded_for and (forwarded := request.headers.get("x-forwarded-for")):
        return forwarded.split(",")[0].strip()[:64]
    return request.client.host if request.client else "unknown"


ClientIp = Annotated[str, Depends(client_ip)]


def feature(name: str):
    """A dependency that answers 404 while feature flag ``name`` is off."""

    async def check(ctx: Ctx) -> None:
        if not ctx.settings.feature(name):
            raise FeatureDisabled(f"the {name} feature is disabled")

    return Depends(check)
