"""The Redis client factory (redis.asyncio) and key naming under the configured prefix."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from verseflow.settings import Settings


def create_redis(settings: Settings) -> Redis:
    """A client owning a *blocking* pool: a burst of requests (10,000 WebSocket handshakes, each
    checking its token) waits up to ``redis_pool_timeout_s`` for a connection instead of failing
    with ``MaxConnectionsError`` as redis-py's default pool does past 100."""
    _, redis_url = settings.require_urls()
    pool = BlockingConnectionPool.from_url(
        redis_url, max_connections=settings.redis_max_connections, timeout=settings.redis_pool_timeout_s,
        decode_responses=True, health_check_interval=30,
    )
    return Redis.from_pool(pool)


def key(settings: Settings, *parts: object) -> str:
    """A namespaced key: tests and co-tenants isolate by ``VERSEFLOW_REDIS_PREFIX``."""
    return settings.redis_prefix + ":".join(str(p) for p in parts)
