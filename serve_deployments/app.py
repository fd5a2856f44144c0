"""The FastAPI application: routers, problem handlers, middleware and the per-process resources.

``create_app`` is used both by the Serve ingress deployment and, unchanged, by the bare uvicorn
baseline in ``bench/api.py``. The lifespan opens the asyncpg pool and the Redis client for this
process and applies pending migrations (under an advisory lock, so replicas starting together run
each migration once).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from billing import subscriptions
from serve_deployments import problems
from serve_deployments.deps import Context
from serve_deployments.middleware import RequestContextMiddleware
from serve_deployments.routes import (
    app_passwords,
    artists,
    auth,
    billing,
    fingerprint,
    health,
    playlists,
    plays,
    recommendations,
    rooms,
    search,
    subsonic,
    tracks,
    uploads,
    users,
    web,
)
from verseflow import logs, migrations
from verseflow.db import create_pool
from verseflow.metrics import http_metrics
from verseflow.redis_client import create_redis
from verseflow.settings import Settings, get_settings

ROUTERS = [health.router, auth.router, users.router, artists.router, tracks.router, playlists.router,
           search.router, rooms.router, fingerprint.router, plays.router, uploads.router,
           app_passwords.router, subsonic.router, recommendations.router, billing.router, web.router]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings)
        redis = create_redis(settings)
        try:
            async with pool.acquire() as conn:
                await migrations.migrate(conn)
            app.state.ctx = Context(pool=pool, redis=redis, settings=settings)
            yield
        finally:
            await subscriptions.close_stripe_clients()
            await redis.aclose()
            await pool.close()

    app = FastAPI(
        title="VerseFlow API",
        version="0.1.0",
        description="Accounts, catalog, playlists and search for the VerseFlow music platform. "
                    "Errors are RFC 9457 problem details (application/problem+json).",
        lifespan=lifespan,
    )
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    # Starlette's limiter, inside ours so that its text/plain 413 leaves as a problem; routes may
    # raise or lower the limit with FastAPI's per-route ``max_body_size`` (uploads do).
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=http_metrics())
    return app
