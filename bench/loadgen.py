"""HTTP load, open and closed loop, and the latency figures the report prints.

Open loop: call ``i`` is due at ``start + i / rate`` whatever happened to the calls before it (as
wrk2 does), and its latency counts from that due time, not from when it was actually sent. A server
that stalls therefore shows the stall in every call queued behind it instead of quietly lowering
the arrival rate (coordinated omission). The generator's own lag (actual send time minus due time)
is reported too: if it grows, the generator, not the server, is what falls behind.

Closed loop: ``concurrency`` workers, each sending its next call as soon as the previous one returns;
this finds the peak throughput, and its latencies are those of a saturated server.

aiohttp, not httpx: measured on this machine against a trivial ASGI app, httpx.AsyncClient spent
about 2.5 ms of CPU per request and aiohttp about 0.07 ms; at 200 req/s on two cores httpx alone
would take half a core from the servers it measures.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

TIMEOUT_S = 10.0
OPEN_LOOP_CONNECTIONS = 256  # beyond this, calls wait for a connection (still timed from their due time)


@dataclass(frozen=True)
class Call:
    group: str  # "reads" or "search": the report's rows
    path: str
    headers: tuple[tuple[str, str], ...] = ()  # e.g. the caller's bearer token


@dataclass(frozen=True)
class Outcome:
    group: str
    latency_s: float
    lag_s: float  # how late the generator sent it
    error: str | None  # "HTTP 500", "TimeoutError", ...; None for a 200


@dataclass(frozen=True)
class Pass:
    outcomes: list[Outcome]
    elapsed_s: float  # from the first due time to the last answer


@dataclass(frozen=True)
class Stats:
    requests: int
    rate: float  # answered requests per second over the pass
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


async def open_loop(base_url: str, calls: list[Call], rate: float) -> Pass:
    """Send ``calls`` at a fixed ``rate`` per second, never waiting for answers."""
    async with _session(base_url, OPEN_LOOP_CONNECTIONS) as http:
        return await paced(len(calls), rate, lambda i, due: send(http, calls[i], due))


async def paced(count: int, rate: float, attempt: Callable[[int, float], Awaitable[Outcome]]) -> Pass:
    """Start ``attempt(i, due)`` for i in ``range(count)`` at its due time, ``rate`` per second, never
    waiting for earlier ones (an open loop: no coordinated omission); each reports its own outcome."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    started = []
    for i in range(count):
        due = start + i / rate
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        started.append(asyncio.create_task(attempt(i, due)))
    outcomes = await asyncio.gather(*started)
    return Pass(list(outcomes), loop.time() - start)


async def closed_loop(base_url: str, calls: list[Call], concurrency: int, duration_s: float) -> Pass:
    """``concurrency`` workers cycling through ``calls`` back to back for ``duration_s``."""
    async with _session(base_url, concurrency) as http:
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + duration_s
        upcoming = itertools.cycle(calls)
        outcomes: list[Outcome] = []

        async def worker() -> None:
            while loop.time() < deadline:
                outcomes.append(await send(http, next(upcoming), loop.time()))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Pass(outcomes, loop.time() - start)


def summarize(run: Pass) -> dict[str, Stats]:
    """Figures per group and for all calls together (errors' latencies included: they were waited for)."""
    groups = sorted({o.group for o in run.outcomes})
    by_group = {group: [o for o in run.outcomes if o.group == group] for group in groups}
    by_group["all"] = run.outcomes
    return {group: _stats(outcomes, run.elapsed_s) for group, outcomes in by_group.items()}


def lag_p99_ms(run: Pass) -> float:
    return percentile(sorted(o.lag_s for o in run.outcomes), 0.99) * 1000


def error_kinds(run: Pass) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for outcome in run.outcomes:
        if outcome.error:
            kinds[outcome.error] = kinds.get(outcome.error, 0) + 1
    return kinds


def _stats(outcomes: list[Outcome], elapsed_s: float) -> Stats:
    latencies = sorted(o.latency_s for o in outcomes)
    return Stats(
        requests=len(outcomes), rate=len(outcomes) / elapsed_s, errors=sum(1 for o in outcomes if o.error),
        p50_ms=percentile(latencies, 0.50) * 1000, p95_ms=percentile(latencies, 0.95) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _session(base_url: str, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=base_url, connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
    )


async def send(http: aiohttp.ClientSession, call: Call, due: float) -> Outcome:
    loop = asyncio.get_running_loop()
    lag = loop.time() - due
    try:
        async with http.get(call.path, headers=dict(call.headers)) as response:
            await response.read()
            error = None if response.status == 200 else f"HTTP {response.status}"
    except (TimeoutError, aiohttp.ClientError) as exc:
        error = type(exc).__name__
    return Outcome(call.group, loop.time() - due, lag, error)
