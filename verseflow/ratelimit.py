"""Attempt limits in Redis: at most ``limit`` hits per ``window_s``, counted from the first hit.

The window opens at the first attempt (``SET NX EX``) and the counter rises with ``INCR``, which keeps
the expiry: one round trip, no clock-aligned boundary at which a burst could double up, and the
remaining TTL is exactly the ``Retry-After`` to report.
"""

from __future__ import annotations

from redis.asyncio import Redis

from verseflow.errors import RateLimited


async def hit(redis: Redis, key: str, *, limit: int, window_s: int) -> None:
    """Count one attempt against ``key``; raises ``RateLimited`` once ``limit`` is exceeded."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(key, 0, ex=window_s, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        _, count, ttl = await pipe.execute()
    if count > limit:
        raise RateLimited("too many attempts, try again later", retry_after=max(1, int(ttl)))


async def reset(redis: Redis, key: str) -> None:
    await redis.delete(key)


async def exceeded(redis: Redis, key: str, *, limit: int) -> int | None:
    """Seconds until ``key``'s window closes if its ``limit`` is already used up, else None.

    For limits on failures only (Subsonic clients sign every request, so only the failed ones count):
    check with this first, and ``hit`` after a failure."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.ttl(key)
        count, ttl = await pipe.execute()
    if count is not None and int(count) >= limit:
        return max(1, int(ttl))
    return None
