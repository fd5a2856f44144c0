"""What the relay and consumer loops share: which failures are worth retrying, and an interruptible wait.

Both loops outlive PostgreSQL and Redis restarts (they log the failure and try again on the next
pass) and must stop promptly when their stop event is set, even in the middle of a poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from redis.exceptions import RedisError

# Connection loss, timeouts (TimeoutError is an OSError) and server-side errors of either store.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RedisError,
)


async def wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return as soon as one of ``events`` is set, or after ``seconds``."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def every(seconds: float, job: Callable[[], Awaitable[object]], stop: asyncio.Event, *,
                log: logging.Logger) -> None:
    """Run ``job`` now and then every ``seconds`` until ``stop`` is set (periodic upkeep such as
    sweeping expired uploads); a failed run is logged and the next one comes on time."""
    while not stop.is_set():
        try:
            await job()
        except TRANSIENT_ERRORS as exc:
            log.warning("periodic job failed, retrying in %.0f s: %r", seconds, exc)
        except Exception:
            log.exception("periodic job failed")
        await wait_any(stop, seconds=seconds)
