"""Serve against bare uvicorn: the same app, database and requests, measured in one run.

    .venv/bin/python -m bench.api [--rate 200] [--duration 20] [--warmup 5] [--concurrency 32]
                                  [--peak-duration 10] [--replicas 1] [--seed 1]

What runs: a fresh ``vf_bench`` database on the PostgreSQL server of ``VERSEFLOW_DATABASE_URL``
(default: the local test server), seeded through the domain services; Redis from
``VERSEFLOW_REDIS_URL`` under a key prefix of this run. Then, one after the other so that they never
compete for the two cores, two servers, each a process group of its own:

- ``serve``: ``bench/serve_launcher.py``: a local Ray, Serve's proxy on a free port and the API
  deployment as ``cluster/serve_config.yaml`` configures it, but with ``--replicas`` (default 1)
  instead of autoscaling (the launcher says why);
- ``uvicorn``: ``uvicorn --factory serve_deployments.app:create_app``, one process, the same app.

Each gets a warm-up, then the open-loop pass at ``--rate`` (latency from each request's due time),
then the closed-loop pass at ``--concurrency`` (peak throughput); ``loadgen`` says why. This process
generates the load; the servers are separate processes. The report prints both, their ratio and
whether the target holds: p95 under 100 ms at the rate through Serve, with every request answered.
Figures also go to ``bench/results/api-<time>.json``; server output to ``api-<time>-<target>.log``.

Clean-up runs on success, on errors, on Ctrl-C and on SIGTERM: each server gets SIGINT, as from
Ctrl-C (the launcher then stops Serve and Ray in order), then its process group is killed; the
database is dropped and the run's Redis keys deleted. The exit status is 0 only when the target was met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from bench import harness, loadgen, workload
from bench.harness import ROOT, clean_up
from bench.harness import admin as _admin
from bench.harness import free_port as _free_port
from bench.harness import process_group as _process_group
from bench.harness import say as _say
from bench.harness import wait_healthy as _wait_healthy
from bench.loadgen import Pass
from verseflow import migrations
from verseflow.db import create_pool
from verseflow.settings import Settings

RESULTS = ROOT / "bench" / "results"
BENCH_DATABASE = f"vf_bench_{secrets.token_hex(4)}"  # per run: runs may overlap (tests, CI)
TARGET_P95_MS = 100.0
GROUPS = ("reads", "search", "all")
SMOKE_CATALOG = {"artist_count": 10, "playlist_count": 10}

SERVERS: dict[str, Callable[[int, argparse.Namespace], list[str]]] = {
    "serve": lambda port, args: [
        sys.executable, "-m", "bench.serve_launcher", str(port), str(args.replicas)],
    "uvicorn": lambda port, args: [
        sys.executable, "-m", "uvicorn", "--factory", "serve_deployments.app:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` cleans up as Ctrl-C does
    admin_url = harness.admin_url()
    settings = harness.run_settings(BENCH_DATABASE, "bench")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    load_before = os.getloadavg()
    try:
        catalog = asyncio.run(_prepare(admin_url, settings, args))
        rng = random.Random(args.seed)
        warmup = workload.request_mix(catalog, round(args.rate * args.warmup), rng)
        calls = workload.request_mix(catalog, round(args.rate * args.duration), rng)
        runs = {}
        for target in SERVERS:
            with _server(target, args, settings, RESULTS / f"api-{stamp}-{target}.log") as base_url:
                runs[target] = asyncio.run(_measure(target, base_url, warmup, calls, args))
    finally:
        asyncio.run(clean_up(admin_url, settings, BENCH_DATABASE))

    report, met = _report(runs, args, load_before)
    print(report)
    result_file = RESULTS / f"api-{stamp}.json"
    result_file.write_text(json.dumps(_as_json(runs, args, catalog, load_before, met), indent=2))
    print(f"\nfigures written to {result_file.relative_to(ROOT)}")
    if args.smoke:
        return 0 if _measured(runs) else 1
    return 0 if met else 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve against bare uvicorn, same database and requests.")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop arrival rate, requests/s")
    parser.add_argument("--duration", type=float, default=20.0, help="open-loop measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="open-loop seconds before measuring")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop workers")
    parser.add_argument("--peak-duration", type=float, default=10.0, help="closed-loop seconds")
    parser.add_argument("--replicas", type=int, default=1, help="Serve replicas (uvicorn stays one process)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the catalog and the request mix")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny catalog and seconds-long passes: proves the benchmark runs (make test); "
                             "exit 0 when every pass was measured without errors, whatever the target")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rate, args.duration, args.warmup = 20.0, 2.0, 1.0
        args.concurrency, args.peak_duration = 4, 2.0
    return args


def _measured(runs: dict[str, dict[str, Pass]]) -> bool:
    """Every target answered every pass, with no errors: what a smoke run must show."""
    for target in SERVERS:
        for name in ("open", "closed"):
            stats = loadgen.summarize(runs[target][name])["all"] if target in runs else None
            if stats is None or stats.requests == 0 or stats.errors:
                return False
    return True


async def _prepare(admin_url: str, settings: Settings, args: argparse.Namespace) -> workload.Catalog:
    """A fresh database, migrated, seeded and analyzed (so that the planner has statistics from the
    first request, not from whenever autovacuum comes by mid-run)."""
    await _admin(admin_url, f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)",
                 f"CREATE DATABASE {BENCH_DATABASE}")
    pool = await create_pool(settings, max_size=workload.SEED_CONCURRENCY)
    try:
        async with pool.acquire() as conn:
            await migrations.migrate(conn)
        started = time.monotonic()
        sizes = SMOKE_CATALOG if args.smoke else {}
        catalog = await workload.seed(pool, settings, random.Random(args.seed), **sizes)
        await pool.execute("VACUUM ANALYZE")
    finally:
        await pool.close()
    _say(f"seeded {catalog.counts()} in {time.monotonic() - started:.1f}s")
    return catalog


async def _measure(target: str, base_url: str, warmup: list[loadgen.Call], calls: list[loadgen.Call],
                   args: argparse.Namespace) -> dict[str, Pass]:
    _say(f"{target}: warm-up, {args.warmup:g}s at {args.rate:g} req/s")
    await loadgen.open_loop(base_url, warmup, args.rate)
    _say(f"{target}: open loop, {args.duration:g}s at {args.rate:g} req/s")
    steady = await loadgen.open_loop(base_url, calls, args.rate)
    _say(f"{target}: closed loop, {args.concurrency} concurrent for {args.peak_duration:g}s")
    peak = await loadgen.closed_loop(base_url, calls, args.concurrency, args.peak_duration)
    return {"open": steady, "closed": peak}


@contextlib.contextmanager
def _server(target: str, args: argparse.Namespace, settings: Settings, log_path: Path) -> Iterator[str]:
    """Run one server in a process group of its own (Ctrl-C reaches only this process, which then
    stops the server in order) and yield its base URL once ``/health`` answers."""
    port = _free_port()
    env = {
        **os.environ,
        "VERSEFLOW_DATABASE_URL": settings.database_url, "VERSEFLOW_REDIS_URL": settings.redis_url,
        "VERSEFLOW_REDIS_PREFIX": settings.redis_prefix, "VERSEFLOW_JWT_SECRET": settings.secret(),
    }
    with _process_group(f"{target} on port {port}", SERVERS[target](port, args), env, log_path) as process:
        base_url = f"http://127.0.0.1:{port}"
        _wait_healthy(process, base_url, log_path)
        yield base_url


def _report(runs: dict[str, dict[str, Pass]], args: argparse.Namespace,
            load_before: tuple[float, float, float]) -> tuple[str, bool]:
    """The table (each target, then the Serve/uvicorn ratio) and the verdict on the target."""
    titles = {
        "open": f"open loop at {args.rate:g} req/s for {args.duration:g}s (latency from due time)",
        "closed": f"closed loop, {args.concurrency} concurrent for {args.peak_duration:g}s (peak throughput)",
    }
    header = (f"{'group':<8}{'target':<9}{'requests':>9}{'req/s':>9}{'errors':>8}"
              f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    load = " ".join(f"{x:.2f}" for x in load_before)
    lines = [f"\n{os.cpu_count()} CPUs, load average (1, 5, 15 min) before the run: {load}"]
    for pass_name, title in titles.items():
        lines += ["", title, header, "-" * len(header)]
        stats = {target: loadgen.summarize(run[pass_name]) for target, run in runs.items()}
        for group in GROUPS:
            for target in runs:
                s = stats[target][group]
                lines.append(f"{group:<8}{target:<9}{s.requests:>9}{s.rate:>9.1f}{s.errors:>8}"
                             f"{s.p50_ms:>9.1f}{s.p95_ms:>9.1f}{s.p99_ms:>9.1f}")
            serve, uvicorn = stats["serve"][group], stats["uvicorn"][group]
            lines.append(f"{group:<8}{'ratio':<9}{'':>9}{_ratio(serve.rate, uvicorn.rate):>9}{'':>8}"
                         f"{_ratio(serve.p50_ms, uvicorn.p50_ms):>9}{_ratio(serve.p95_ms, uvicorn.p95_ms):>9}"
                         f"{_ratio(serve.p99_ms, uvicorn.p99_ms):>9}")
    lines.append("")
    for target, run in runs.items():
        errors = {name: kinds for name, p in run.items() if (kinds := loadgen.error_kinds(p))}
        lines.append(f"generator, {target}: open-loop send lag p99 {loadgen.lag_p99_ms(run['open']):.1f} ms"
                     + (f"; errors {errors}" if errors else ""))

    serve = loadgen.summarize(runs["serve"]["open"])["all"]
    met = serve.p95_ms < TARGET_P95_MS and serve.errors == 0 and serve.rate >= 0.95 * args.rate
    lines.append(f"\ntarget (p95 < {TARGET_P95_MS:g} ms at {args.rate:g} req/s through Serve, no errors): "
                 f"{'MET' if met else 'NOT MET'} (p95 {serve.p95_ms:.1f} ms at {serve.rate:.1f} req/s, "
                 f"{serve.errors} errors)")
    return "\n".join(lines), met


def _ratio(serve: float, uvicorn: float) -> str:
    return f"{serve / uvicorn:.2f}x" if uvicorn else "-"


def _as_json(runs: dict[str, dict[str, Pass]], args: argparse.Namespace, catalog: workload.Catalog,
             load_before: tuple[float, float, float], met: bool) -> dict:
    return {
        "config": vars(args), "cpus": os.cpu_count(), "load_average_before": load_before,
        "catalog": catalog.counts(), "target_met": met,
        "results": {
            target: {
                name: {"groups": {g: asdict(s) for g, s in loadgen.summarize(p).items()},
                       "send_lag_p99_ms": loadgen.lag_p99_ms(p), "errors": loadgen.error_kinds(p)}
                for name, p in run.items()
            }
            for target, run in runs.items()
        },
    }


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped, database dropped")
        sys.exit(130)
