"""Test fixtures: real PostgreSQL, Redis and Ray, one of each per test session.

PostgreSQL: a fresh database per run on the server named by ``VERSEFLOW_DATABASE_URL`` (CI's
localhost server by default), dropped afterwards; if no server answers, an embedded one.
Redis: ``VERSEFLOW_REDIS_URL`` (localhost by default) with a per-run key prefix; if none answers,
an embedded one. Stripe: the local server (``stripelocal``) in a thread on a free port.
Ray: started once, lazily, by the tests that need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse, urlunparse

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from tests.bench_smoke import (  # noqa: F401 - fixtures and the hook that orders the smoke tests last
    _smoke_runs_start_with_the_session,
    pytest_collection_modifyitems,
    smoke_runs,
)

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
RUN_ID = uuid.uuid4().hex[:8]

if TYPE_CHECKING:
    from fastapi import FastAPI

    from verseflow.settings import Settings


def _with_database(url: str, name: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path="/" + name))


async def _reachable_pg(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def _reachable_redis(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        return bool(await client.ping())
    except (OSError, aioredis.RedisError):
        return False
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def services() -> Iterator[dict[str, str]]:
    """Database and Redis URLs for this run, environment prepared for app imports and Ray workers."""
    stoppers = []
    admin_url = os.environ.get("VERSEFLOW_DATABASE_URL", DEFAULT_DATABASE_URL)
    redis_url = os.environ.get("VERSEFLOW_REDIS_URL", DEFAULT_REDIS_URL)
    scratch = Path(tempfile.mkdtemp(prefix="verseflow-test-"))
    if not asyncio.run(_reachable_pg(admin_url)):
        from verseflow.embedded import EmbeddedPostgres

        embedded_pg = EmbeddedPostgres(scratch / "postgres")
        admin_url = embedded_pg.start()
        stoppers.append(embedded_pg.stop)
    if not asyncio.run(_reachable_redis(redis_url)):
        from verseflow.embedded import EmbeddedRedis

        embedded_redis = EmbeddedRedis(scratch / "redis")
        redis_url = embedded_redis.start()
        stoppers.append(embedded_redis.stop)

    # Stripe: the local server (stripelocal), as `make up` runs it when no key is configured.
    from stripelocal import LocalStripe

    stripe_local = LocalStripe().start()
    stoppers.append(stripe_local.stop)

    database = f"vf_test_{RUN_ID}"
    asyncio.run(_admin(admin_url, f"CREATE DATABASE {database}"))
    env = {
        "VERSEFLOW_DATABASE_URL": _with_database(admin_url, database),
        "VERSEFLOW_REDIS_URL": redis_url,
        "VERSEFLOW_REDIS_PREFIX": f"vftest{RUN_ID}:",
        "VERSEFLOW_JWT_SECRET": "test-secret-" + uuid.uuid4().hex,
        "VERSEFLOW_VAR_DIR": str(scratch / "var"),
        "VERSEFLOW_ENVIRONMENT": "test",
        "VERSEFLOW_STRIPE_SECRET_KEY": stripe_local.api_key,
        "VERSEFLOW_STRIPE_API_BASE": stripe_local.url,
        "VERSEFLOW_STRIPE_WEBHOOK_SECRET": "whsec_" + uuid.uuid4().hex,
        # Stripe.js's key: the subscription page offers Stripe's Payment Element (tests/js/stripe_standin.js
        # stands in for Stripe.js in the browser, which cannot reach js.stripe.com here).
        "VERSEFLOW_STRIPE_PUBLISHABLE_KEY": "pk_test_verseflow_standin",
        # Every in-process request comes from one address; the per-IP limit has its own test.
        "VERSEFLOW_LOGIN_ATTEMPTS_PER_IP": "1000000",
        # Realtime: small bounds so limits are reachable in seconds (each has its own test).
        "VERSEFLOW_EDGE_PORT": str(free_port()),
        "VERSEFLOW_WS_AUTH_TIMEOUT_S": "1",
        "VERSEFLOW_WS_OUTBOUND_QUEUE": "64",
        "VERSEFLOW_WS_SEND_TIMEOUT_S": "3",
        "VERSEFLOW_WS_MESSAGES_PER_S": "50",
        "VERSEFLOW_WS_MESSAGE_BURST": "100",
        "VERSEFLOW_CHAT_MAX_CHARS": "16000",
        "VERSEFLOW_PRESENCE_FLUSH_S": "0.02",
        # Recommendations: serving processes look for a new model version on every request; tiny models.
        "VERSEFLOW_REC_MODEL_REFRESH_S": "0.001",
        "VERSEFLOW_REC_FACTORS": "2",  # the fixtures have two tastes
        "VERSEFLOW_REC_REGULARIZATION": "0.05",  # the default suits 100k ratings; a dozen listeners need less
        "VERSEFLOW_REC_TRAIN_THREADS": "1",
    }
    os.environ.update(env)
    from verseflow.settings import get_settings

    get_settings.cache_clear()
    try:
        yield env
    finally:
        asyncio.run(_admin(admin_url, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        for stop in reversed(stoppers):
            stop()


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def settings(services):
    from verseflow.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
async def pool(settings) -> AsyncIterator[asyncpg.Pool]:
    from verseflow import migrations
    from verseflow.db import create_pool

    pool = await create_pool(settings)
    async with pool.acquire() as conn:
        await migrations.migrate(conn)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def redis(settings) -> AsyncIterator[aioredis.Redis]:
    from verseflow.redis_client import create_redis

    client = create_redis(settings)
    yield client
    keys = [k async for k in client.scan_iter(match=settings.redis_prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The FastAPI app built from ``settings`` with its lifespan running (pool, Redis, migrations)."""
    from serve_deployments.app import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def app(settings, pool):
    """The FastAPI app with its lifespan running (pool, Redis, migrations)."""
    async with running_app(settings) as application:
        yield application


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app in-process (real database and Redis, no network hop)."""
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 12345))
    async with httpx.AsyncClient(transport=transport, base_url="http://verseflow.test") as http:
        yield http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(services) -> Iterator[None]:
    """One local Ray per test run (≈5 s), shared by every test that needs real actors."""
    import ray

    from actors.transcode import SLOT

    metrics_port = free_port()
    os.environ["VERSEFLOW_TEST_RAY_METRICS_PORT"] = str(metrics_port)
    ray.init(address="local", include_dashboard=False, num_cpus=4, resources={SLOT: 2},
             logging_level="ERROR", log_to_driver=False, _metrics_export_port=metrics_port)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_metrics_url(ray_cluster) -> str:
    """Where Ray's metrics agent exports this test run's metrics (Prometheus text format)."""
    return f"http://127.0.0.1:{os.environ['VERSEFLOW_TEST_RAY_METRICS_PORT']}/metrics"


@pytest.fixture(scope="session")
def serve_url(ray_cluster) -> Iterator[str]:
    """The Serve applications (API, realtime, documents, media) deployed once on a free port, in one
    ``serve.run_many`` so their replicas start side by side; yields the base URL."""
    from ray import serve

    from serve_deployments.application import build, build_documents, build_media, build_realtime

    port = free_port()
    zero_cpu = {"ray_actor_options": {"num_cpus": 0}}
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run_many([
        serve.RunTarget(build(), name="verseflow", route_prefix="/"),
        serve.RunTarget(build_realtime({"gateway": zero_cpu}), name="realtime", route_prefix="/v1/ws"),
        serve.RunTarget(build_documents({"documents": zero_cpu}), name="documents", route_prefix="/v1/yjs"),
        serve.RunTarget(build_media({"media": zero_cpu}), name="media", route_prefix="/media"),
    ])
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="session")
def realtime(serve_url, settings) -> Iterator[dict[str, str]]:
    """The realtime applications on Serve (deployed with ``serve_url``) plus one edge; yields the
    WebSocket base URLs."""
    from actors.edge import start_edges, stop_edges
    from actors.room_host import stop_hosts

    edges = start_edges(settings)
    ws = serve_url.replace("http://", "ws://")
    yield {"serve": f"{ws}/v1/ws", "edge": f"ws://127.0.0.1:{settings.edge_port}/v1/ws",
           "serve_yjs": f"{ws}/v1/yjs", "edge_yjs": f"ws://127.0.0.1:{settings.edge_port}/v1/yjs"}
    stop_edges(edges)
    stop_hosts(settings)


@pytest.fixture(scope="session")
def media_url(serve_url) -> str:
    """The media application on Serve (signed files under /media; deployed with ``serve_url``)."""
    return serve_url


class Api:
    """Small helpers over an httpx client for the flows most tests need."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def user(self, role: str = "listener", *, password: str = "correct horse battery") -> dict:
        """Register and log in a fresh user; returns ids, tokens and ready-made headers."""
        email = f"{role}-{uuid.uuid4().hex[:10]}@example.com"
        reg = await self.http.post("/v1/auth/register", json={
            "email": email, "password": password, "display_name": f"{role} {email[:6]}", "role": role})
        assert reg.status_code == 201, reg.text
        tok = await self.http.post("/v1/auth/token", data={"username": email, "password": password})
        assert tok.status_code == 200, tok.text
        tokens = tok.json()
        return {"id": reg.json()["id"], "email": email, "password": password, **tokens,
                "headers": {"Authorization": f"Bearer {tokens['access_token']}"}}

    async def artist_with_track(self, title: str = "Song", name: str | None = None) -> dict:
        owner = await self.user("artist")
        artist = await self.http.post("/v1/artists", json={"name": name or f"Artist {uuid.uuid4().hex[:6]}"},
                                      headers=owner["headers"])
        assert artist.status_code == 201, artist.text
        track = await self.http.post("/v1/tracks", json={"title": title, "artist_id": artist.json()["id"]},
                                     headers=owner["headers"])
        assert track.status_code == 201, track.text
        return {"owner": owner, "artist_id": artist.json()["id"], "track_id": track.json()["id"]}


@pytest.fixture
def api(client) -> Api:
    return Api(client)


@pytest.fixture(scope="module")
def sink():
    """Where a module's own local Stripe server delivers its webhooks (tests/stripe_support.py)."""
    from tests.stripe_support import WebhookSink

    receiver = WebhookSink()
    yield receiver
    receiver.close()
