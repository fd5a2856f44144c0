"""The home feed through Serve: ``GET /v1/me/recommendations`` with the item vectors in ``RecShard``
actors, against the same feed computed in process with an exact index, in one run.

    .venv/bin/python -m bench.recs --only serving     # runs this after the index-level comparison

``bench/recs.py``'s index-level part times the item search alone; this part times what a listener
waits for. What runs: a fresh database on ``VERSEFLOW_DATABASE_URL``'s server holding ``items``
published tracks and ``users`` listeners with ``per_user`` interactions each (written directly: the
event consumer that maintains ``interactions`` is not what is measured), and a model of random factors
for exactly those tracks and listeners, published as training publishes one (artefact in a temporary
object store, version marked ready). Then ``bench/serve_launcher.py`` serves the API with
``VERSEFLOW_REC_SHARDS=shards`` (one replica, as ``bench/api.py`` explains), and:

- baseline: the same ``ml.recommend.recommendations`` called in this process, same database, an exact
  in-process index, at the same rate: what the feed costs without Serve and shards;
- Serve: a warm-up (the first request loads the model into the shards), an open loop at ``rate``
  (latency from each request's due time, ``bench/loadgen.py``), a closed loop of 8 clients;
- recall@10 of each listener's served feed against the baseline's exact feed, and how many answers
  came from fewer shards than there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import psutil

from accounts.model import Principal, Role
from bench import harness, loadgen
from bench.harness import ROOT, CpuMeter, clean_up, create_database, free_port, process_group, say, wait_healthy
from ml import collaborative, recommend, training
from ml.item_index import LocalIndex
from verseflow.db import create_pool
from verseflow.security import issue_access_token
from verseflow.settings import Settings
from verseflow.storage import object_store

LIMIT = 20  # a page of the home feed
TARGET_P99_MS = 50.0
TARGET_RECALL = 0.95


@dataclass(frozen=True)
class Listeners:
    ids: list[uuid.UUID]
    tokens: list[str]


async def _seed(settings: Settings, items: int, users: int, per_user: int, factors: int) -> Listeners:
    """Tracks, listeners, their interactions and a ready model version over exactly them."""
    rng = np.random.default_rng(7)
    pool = await create_pool(settings, max_size=2)
    try:
        owner = await pool.fetchval(
            "INSERT INTO users (id, email, password_hash, display_name, role) "
            "VALUES (gen_random_uuid(), 'owner@bench.invalid', 'x', 'Owner', 'artist') RETURNING id")
        artist = await pool.fetchval(
            "INSERT INTO artists (id, owner_id, name) VALUES (gen_random_uuid(), $1, 'Bench') RETURNING id", owner)
        await pool.execute(
            "INSERT INTO tracks (id, artist_id, title, genre, duration_s, status) "
            "SELECT gen_random_uuid(), $1, 'Track ' || n, 'rock', 180, 'ready' FROM generate_series(1, $2) n",
            artist, items, timeout=600)  # the search columns and triggers make 100k rows take a while
        track_ids = [str(r["id"]) for r in await pool.fetch("SELECT id FROM tracks ORDER BY id")]
        listener_ids = [uuid.uuid4() for _ in range(users)]
        await pool.executemany(
            "INSERT INTO users (id, email, password_hash, display_name, role) VALUES ($1, $2, 'x', 'L', 'listener')",
            [(u, f"{u.hex}@bench.invalid") for u in listener_ids])
        rows = [(u, track_ids[t]) for u in listener_ids for t in rng.choice(items, per_user, replace=False)]
        await pool.executemany(
            "INSERT INTO interactions (user_id, track_id, positive, decayed_at, completes) "
            "VALUES ($1, $2::uuid, 1, now(), 1)", rows)
        version = await training.request_version(pool, "cli")  # as `verseflow recs train` asks
        model = collaborative.Model(
            version=version, user_ids=[str(u) for u in listener_ids], track_ids=track_ids,
            user_factors=rng.normal(size=(users, factors)).astype(np.float32),
            item_factors=(rng.normal(size=(items, factors)) * rng.uniform(0.5, 1.5, (items, 1))).astype(np.float32),
            popularity=np.ones(items, dtype=np.float32), regularization=1.0,
            evidence=np.full(items, 10, dtype=np.float32))
        await training.publish_version(pool, object_store(settings), model)
        await pool.execute("VACUUM ANALYZE")
    finally:
        await pool.close()
    tokens = [issue_access_token(u, "listener", secret=settings.secret(), ttl_s=3600, issuer=settings.jwt_issuer,
                                 algorithm=settings.jwt_algorithm)[0] for u in listener_ids]
    return Listeners(listener_ids, tokens)


async def _in_process(settings: Settings, listeners: Listeners, rate: float,
                      seconds: float) -> tuple[loadgen.Pass, dict[uuid.UUID, list[str]]]:
    """The baseline pass (same rate, same code, exact index, no Serve) and each listener's exact feed."""
    index = LocalIndex(10**9, 1, settings.rec_hnsw_ef_search)  # never HNSW: exact
    # Each run's fresh database numbers its model version 1 again: a cache of this process's would take
    # an earlier run's model for it, so each run has its own.
    cache = recommend.ModelCache()
    store = object_store(settings)
    pool = await create_pool(settings, max_size=8)
    try:
        async def feed(user: uuid.UUID) -> dict:
            return await recommend.recommendations(pool, store, settings, Principal(user, Role.LISTENER), LIMIT,
                                                   index=index, cache=cache)

        exact = {u: [str(i["track"]["id"]) for i in (await feed(u))["items"]] for u in listeners.ids}

        async def one(i: int, due: float) -> loadgen.Outcome:
            loop = asyncio.get_running_loop()
            lag = loop.time() - due
            try:
                await feed(listeners.ids[i % len(listeners.ids)])
                error = None
            except Exception as exc:  # noqa: BLE001 - counted: the report says how many failed
                error = type(exc).__name__
            return loadgen.Outcome("feed", loop.time() - due, lag, error)

        return await loadgen.paced(round(rate * seconds), rate, one), exact
    finally:
        await pool.close()


def _calls(listeners: Listeners, count: int) -> list[loadgen.Call]:
    return [loadgen.Call("feed", f"/v1/me/recommendations?limit={LIMIT}",
                         (("Authorization", f"Bearer {listeners.tokens[i % len(listeners.tokens)]}"),))
            for i in range(count)]


async def _feed(http: aiohttp.ClientSession, token: str) -> dict:
    async with http.get(f"/v1/me/recommendations?limit={LIMIT}",
                        headers={"Authorization": f"Bearer {token}"}) as response:
        return await response.json() if response.status == 200 else {}


async def _model_served(base_url: str, listeners: Listeners, timeout_s: float = 180.0) -> None:
    """Until the API serves the model: the first requests load it into the shards (and get popular picks)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(base_url=base_url, timeout=aiohttp.ClientTimeout(total=30)) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                if (await _feed(http, listeners.tokens[0])).get("model_version") is not None:
                    return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the API did not serve the model within {timeout_s:.0f} s")


async def _served_feeds(base_url: str, listeners: Listeners) -> tuple[dict[uuid.UUID, list[str]], int]:
    """Each listener's feed as Serve answers it, and how many answers lacked a shard or the model."""
    feeds, partial = {}, 0
    async with aiohttp.ClientSession(base_url=base_url) as http:
        for user, token in zip(listeners.ids, listeners.tokens, strict=True):
            body = await _feed(http, token)
            feeds[user] = [str(i["track"]["id"]) for i in body.get("items", [])]
            shards = body.get("shards")
            partial += body.get("model_version") is None or shards is None or not shards["complete"]
    return feeds, partial


def _recall(served: dict[uuid.UUID, list[str]], exact: dict[uuid.UUID, list[str]], k: int = 10) -> float:
    found = [len(set(served[u][:k]) & set(want[:k])) / max(1, min(k, len(want))) for u, want in exact.items()]
    return float(np.mean(found)) if found else 0.0


@dataclass(frozen=True)
class Served:
    steady: loadgen.Pass
    peak: loadgen.Pass
    feeds: dict[uuid.UUID, list[str]]
    partial: int
    cpu_s: dict[str, float]  # CPU seconds per role over the steady pass


async def _through_serve(base_url: str, listeners: Listeners, rate: float, seconds: float,
                         warmup_s: float, meter: CpuMeter) -> Served:
    await _model_served(base_url, listeners)
    await loadgen.open_loop(base_url, _calls(listeners, round(rate * warmup_s)), rate)
    before = meter.snapshot()
    steady = await loadgen.open_loop(base_url, _calls(listeners, round(rate * seconds)), rate)
    cpu_s = CpuMeter.spent(before, meter.snapshot())
    peak = await loadgen.closed_loop(base_url, _calls(listeners, len(listeners.tokens)), 8, min(seconds, 5.0))
    feeds, partial = await _served_feeds(base_url, listeners)
    return Served(steady, peak, feeds, partial, cpu_s)


def serving_through_serve(items: int, shards: int, rate: float, seconds: float, *, users: int = 200,
                          per_user: int = 20, factors: int = 64, warmup_s: float = 3.0,
                          index: str = "shards") -> bool:
    """Print the table; True when every pass was measured without errors (what a smoke run needs)."""
    admin_url = harness.admin_url()
    database = f"vf_recsbench_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as folder:
        settings = harness.run_settings(database, "recsbench", storage_dir=Path(folder), rec_shards=shards)
        try:
            asyncio.run(create_database(admin_url, database, settings))
            started = time.monotonic()
            listeners = asyncio.run(_seed(settings, items, users, per_user, factors))
            say(f"seeded {items:,} tracks, {users} listeners in {time.monotonic() - started:.1f}s")
            base, exact = asyncio.run(_in_process(settings, listeners, rate, seconds))
            port = free_port()
            env = {**os.environ, "VERSEFLOW_DATABASE_URL": settings.database_url,
                   "VERSEFLOW_REDIS_URL": settings.redis_url, "VERSEFLOW_REDIS_PREFIX": settings.redis_prefix,
                   "VERSEFLOW_JWT_SECRET": settings.secret(), "VERSEFLOW_STORAGE_DIR": folder,
                   "VERSEFLOW_REC_INDEX": index, "VERSEFLOW_REC_SHARDS": str(shards)}
            log_path = ROOT / "bench" / "results" / f"recs-serve-{time.strftime('%Y%m%d-%H%M%S')}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, "-m", "bench.serve_launcher", str(port), "1"]
            with process_group(f"serve on port {port}", command, env, log_path) as process:
                base_url = f"http://127.0.0.1:{port}"
                wait_healthy(process, base_url, log_path)
                served = asyncio.run(_through_serve(base_url, listeners, rate, seconds, warmup_s,
                                                    CpuMeter(process.pid, database)))
        finally:
            asyncio.run(clean_up(admin_url, settings, database))
    return _report(items, shards, rate, seconds, base, served, _recall(served.feeds, exact))


def _cpu_line(cpu_s: dict[str, float], answered: int) -> str:
    """What a request cost each process in the steady pass, and the rate their sum allows on this machine."""
    per = {role: seconds * 1000 / answered for role, seconds in cpu_s.items() if seconds * 1000 / answered >= 0.05}
    total = sum(per.values())
    cores = psutil.cpu_count() or 1
    parts = ", ".join(f"{role} {ms:.1f}" for role, ms in per.items())
    return (f"CPU per answered request in the steady pass (ms): {parts}; sum {total:.1f} ms, so at most "
            f"{cores * 1000 / total:.0f} requests/s on this machine's {cores} cores with nothing else running")


def _report(items: int, shards: int, rate: float, seconds: float, base: loadgen.Pass, served: Served,
            recall: float) -> bool:
    steady, peak, partial = served.steady, served.peak, served.partial
    b, s, p = (loadgen.summarize(x)["all"] for x in (base, steady, peak))
    print(f"== serving through Serve: GET /v1/me/recommendations?limit={LIMIT}, {items:,} tracks in {shards} "
          f"RecShard actors, one API replica, open loop at {rate:g} requests/s for {seconds:g} s; baseline: the "
          f"same feed in process with an exact index, same rate, same run")
    print("| path | requests | errors | p50 ms | p99 ms | QPS (8 clients) | recall@10 | partial or no model |\n"
          "|---|---|---|---|---|---|---|---|")
    print(f"| in process, exact (baseline) | {b.requests} | {b.errors} | {b.p50_ms:.1f} | {b.p99_ms:.1f} | - | 1.000 "
          f"| - |")
    ratio = f" ({s.p99_ms / b.p99_ms:.2f}x p99)" if b.p99_ms else ""
    print(f"| Serve, {shards} shards{ratio} | {s.requests} | {s.errors} | {s.p50_ms:.1f} | {s.p99_ms:.1f} "
          f"| {p.rate:.0f} | {recall:.3f} | {partial} |")
    met = s.p99_ms < TARGET_P99_MS and recall >= TARGET_RECALL and not s.errors and s.rate >= 0.95 * rate
    if s.requests > s.errors:
        print(_cpu_line(served.cpu_s, s.requests - s.errors))
    print(f"target through Serve (p99 < {TARGET_P99_MS:g} ms and recall@10 >= {TARGET_RECALL} at {rate:g} "
          f"requests/s, no errors): {'met' if met else 'NOT met'}")
    return bool(s.requests and p.requests and b.requests) and not (s.errors or p.errors or b.errors)
