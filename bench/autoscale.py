"""Serve autoscaling seen working: a ramp of API reads, WebSocket sessions and uploads, with replica
counts and latency over time.

    .venv/bin/python -m bench.autoscale              # full run, about 4 minutes (make bench-autoscale)
    .venv/bin/python -m bench.autoscale --smoke      # seconds of load: proves it runs (make test)

What runs: a fresh database on the PostgreSQL server of ``VERSEFLOW_DATABASE_URL`` (default: the local
test server) with a small catalog and a few users, seeded through the domain services; Redis from
``VERSEFLOW_REDIS_URL`` under a key prefix of this run; ``bench/serve_launcher.py PORT auto --realtime``
(a local Ray, Serve's proxy, the ``api`` and ``gateway`` deployments autoscaling as the settings say,
nothing else: its docstring says why) as a process group of its own, printing every deployment's
replicas by state once a second from ``serve.status()``.

The autoscaling settings are the platform's (``verseflow/scaling.py``: targets and limits as measured)
except the delays, which the run shortens through the same settings so that it ends in minutes, and the
replica cap, at most the machine's cores:
``SHORT_DELAYS`` (or ``SMOKE_DELAYS``), unless the environment sets them (``VERSEFLOW_API_SCALING__*``,
``VERSEFLOW_GATEWAY_SCALING__*``). The report prints what was used.

The load (``rampload.py``): a base level (10 %), a linear ramp to the peak, a hold, a ramp back down to
the base, then the base until every deployment is back at its starting replicas (or ``--settle-max``).
The base load keeps running while replicas are removed, so a request lost to a stopping replica would
show. Printed: a timeline row every ``--row-s`` seconds (the level, API requests/s offered, sockets
joined at the row's end, uploads/s offered, running replicas per deployment with those starting or
pending in brackets, API latency p50/p99 from each call's due time, API requests in flight on average
(what the autoscaler counts), chat latency p50/p99 until a message came back, errors), then per
deployment its starting and highest replica count, when it first scaled up (from the start of the
ramp) and when it was back (from the end of the ramp down), and the verdict: scaled up, scaled down
after, failed requests (every API call, session connect, chat echo and upload that did not succeed).

Exit status: 0 when it scaled up, scaled back down and nothing failed; with ``--smoke``, 0 when every
kind of load was answered and replicas were sampled (whatever the verdict). JSON and the launcher's
log go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from websockets.asyncio.client import connect

from accounts import service as accounts
from accounts.model import Principal, Role
from bench import harness, rampload, workload
from bench.harness import REPLICAS_LINE, ROOT, clean_up, create_database, free_port, process_group, say, wait_healthy
from bench.loadgen import percentile
from bench.realtime import create_room
from bench.uploads import write_wav
from catalog import artists
from verseflow.db import create_pool
from verseflow.security import issue_access_token
from verseflow.settings import Settings

RESULTS = ROOT / "bench" / "results"
DEPLOYMENTS = ("api", "gateway")
#: Delays the full run uses instead of the production ones (minutes): the targets stay as measured. And no
#: more replicas of a deployment than this machine has cores: on one machine a replica beyond them adds a
#: process, not capacity, and its start starves the replicas serving (bench/README.md, Autoscaling).
SHORT_DELAYS = {"UPSCALE_DELAY_S": "5", "DOWNSCALE_DELAY_S": "20", "METRICS_INTERVAL_S": "1",
                "LOOK_BACK_PERIOD_S": "5", "MAX_REPLICAS": str(os.cpu_count() or 1)}
SMOKE_DELAYS = {"UPSCALE_DELAY_S": "1", "DOWNSCALE_DELAY_S": "3", "METRICS_INTERVAL_S": "0.5",
                "LOOK_BACK_PERIOD_S": "2", "MAX_REPLICAS": "2"}
UPLOAD_BYTES = 400_000  # a 2 s tone: the upload path's work without minutes of transcoding input
START_TIMEOUT_S = 240.0


@dataclass
class Timeline:
    """Replica counts by state, as the launcher printed them (time since the ramp started)."""

    samples: list[tuple[float, dict[str, dict[str, int]]]] = field(default_factory=list)

    def running(self, deployment: str, at: float) -> tuple[int, int]:
        """(running, starting or pending) at the last sample not after ``at``."""
        states = {}
        for t, deployments in self.samples:
            if t > at:
                break
            states = deployments.get(deployment, {})
        running = states.get("RUNNING", 0)
        return running, sum(states.values()) - running - states.get("STOPPING", 0)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` cleans up as Ctrl-C does
    admin_url = harness.admin_url()
    database = f"vf_asbench_{secrets.token_hex(4)}"
    scratch = Path(tempfile.mkdtemp(prefix="verseflow-asbench-"))
    settings = harness.run_settings(database, "asbench", var_dir=scratch / "var", storage_dir=scratch / "media")
    env = _launcher_env(settings, args)
    scaling = Settings(_env_file=None, **_scaling_from(env)).serve_scaling()  # what the launcher will read
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    load_before = os.getloadavg()
    started = time.monotonic()
    try:
        asyncio.run(create_database(admin_url, database, settings))
        people = asyncio.run(_seed(settings, args))
        log_path = RESULTS / f"autoscale-{stamp}.log"
        port = free_port()
        command = [sys.executable, "-m", "bench.serve_launcher", str(port), "auto", "--realtime",
                   "--report-replicas", "1"]
        with process_group(f"serve on port {port}", command, env, log_path) as launcher:
            base_url = f"http://127.0.0.1:{port}"
            wait_healthy(launcher, base_url, log_path)
            run, timeline = asyncio.run(_measure(base_url, people, scratch, log_path, args, scaling))
    finally:
        asyncio.run(clean_up(admin_url, settings, database))
        shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.monotonic() - started

    verdict = _verdict(run, timeline, scaling)
    print(_report(run, timeline, scaling, verdict, args, load_before, elapsed))
    result_file = RESULTS / f"autoscale-{stamp}.json"
    result_file.write_text(json.dumps({
        "config": vars(args), "load_average_before": load_before, "seconds": elapsed, "verdict": verdict,
        "scaling": {name: s.model_dump() for name, s in scaling.items() if name in DEPLOYMENTS},
        "replicas": timeline.samples, "samples": [asdict(s) for s in run.samples]}))
    print(f"\nfigures written to {result_file.relative_to(ROOT)}")
    if args.smoke:
        return 0 if _measured(run, timeline) else 1
    return 0 if verdict["scaled_up"] and verdict["scaled_down"] and not verdict["failed"] else 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve autoscaling under a ramp of API, WebSocket and upload load.")
    parser.add_argument("--api-rate", type=float, default=60.0, help="peak API requests/s")
    parser.add_argument("--sessions", type=int, default=260, help="peak WebSocket sessions open at once")
    parser.add_argument("--uploads", type=float, default=0.1, help="peak uploads/s")
    parser.add_argument("--session-s", type=float, default=30.0, help="mean session lifetime")
    parser.add_argument("--chat-every", type=float, default=10.0, help="seconds between a session's chat messages")
    parser.add_argument("--rooms", type=int, default=30, help="rooms the sessions join (in turn)")
    parser.add_argument("--users", type=int, default=20, help="registered users the sessions belong to")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds at the base level first")
    parser.add_argument("--up", type=float, default=40.0, help="seconds of ramp up")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds at the peak")
    parser.add_argument("--down", type=float, default=20.0, help="seconds of ramp down")
    parser.add_argument("--settle-max", type=float, default=120.0,
                        help="longest wait at the base level for the replicas to come back down")
    parser.add_argument("--row-s", type=float, default=5.0, help="seconds per timeline row")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds of load and short delays (make test): exit 0 when everything was measured")
    args = parser.parse_args(argv)
    if args.smoke:
        args.api_rate, args.sessions, args.uploads, args.session_s, args.chat_every = 60.0, 20, 0.5, 3.0, 1.0
        args.rooms, args.users = 4, 4
        args.idle, args.up, args.hold, args.down, args.settle_max, args.row_s = 2.0, 3.0, 5.0, 2.0, 10.0, 1.0
    return args


def _launcher_env(settings: Settings, args: argparse.Namespace) -> dict[str, str]:
    env = {**os.environ,
           "VERSEFLOW_DATABASE_URL": settings.database_url, "VERSEFLOW_REDIS_URL": settings.redis_url,
           "VERSEFLOW_REDIS_PREFIX": settings.redis_prefix, "VERSEFLOW_JWT_SECRET": settings.secret(),
           "VERSEFLOW_VAR_DIR": str(settings.var_dir), "VERSEFLOW_STORAGE_DIR": str(settings.storage_dir),
           "VERSEFLOW_TRANSCODE_CPUS": "1000",  # uploads' jobs wait: no encoder competes with the replicas
           "VERSEFLOW_EDGE_PORT": "0"}
    for deployment in DEPLOYMENTS:
        for name, value in (SMOKE_DELAYS if args.smoke else SHORT_DELAYS).items():
            env.setdefault(f"VERSEFLOW_{deployment.upper()}_SCALING__{name}", value)
    return env


def _scaling_from(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """The ``*_scaling`` settings an environment sets, as ``Settings`` keyword arguments."""
    found: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        prefix, _, field_name = key.partition("_SCALING__")
        if field_name and prefix.startswith("VERSEFLOW_"):
            found.setdefault(f"{prefix.removeprefix('VERSEFLOW_').lower()}_scaling", {})[field_name.lower()] = value
    return found


@dataclass
class People:
    tokens: list[str]  # listeners, for the sessions
    artist_token: str
    artist_id: str
    calls: list


async def _seed(settings: Settings, args: argparse.Namespace) -> People:
    """A small catalog for the reads, listeners for the sessions, an artist for the uploads and rooms."""
    pool = await create_pool(settings, max_size=workload.SEED_CONCURRENCY)
    rng = random.Random(1)
    try:
        catalog = await workload.seed(pool, settings, rng, artist_count=5 if args.smoke else 60,
                                      playlist_count=5 if args.smoke else 60)
        await pool.execute("VACUUM ANALYZE")
        tokens = [await _user(pool, settings, f"listener{i}", Role.LISTENER) for i in range(args.users)]
        artist_user = await accounts.register(pool, settings, email="uploader@bench.example",
                                              password="bench password", display_name="Uploader", role=Role.ARTIST)
        artist = await artists.create_artist(pool, Principal(artist_user.id, Role.ARTIST), name="Bench Uploads",
                                             bio="uploads of the autoscaling bench")
    finally:
        await pool.close()
    calls = workload.request_mix(catalog, 5000, rng)
    return People(tokens, _token(settings, artist_user.id, Role.ARTIST), str(artist["id"]), calls)


async def _user(pool, settings: Settings, name: str, role: Role) -> str:  # noqa: ANN001 - an asyncpg pool
    user = await accounts.register(pool, settings, email=f"{name}@bench.example", password="bench password",
                                   display_name=name.title(), role=role)
    return _token(settings, user.id, role)


def _token(settings: Settings, user_id: uuid.UUID, role: Role) -> str:
    return issue_access_token(user_id, role.value, secret=settings.secret(), ttl_s=3600,
                              issuer=settings.jwt_issuer)[0]


async def _measure(base_url: str, people: People, scratch: Path, log_path: Path, args: argparse.Namespace,
                   scaling: dict) -> tuple[rampload.Run, Timeline]:
    ws_url = base_url.replace("http://", "ws://") + "/v1/ws"
    rooms = [await create_room(base_url, people.artist_token) for _ in range(args.rooms)]
    await _preflight(ws_url, people.tokens[0], rooms[0])
    wav = write_wav(scratch / "tone.wav", UPLOAD_BYTES).read_bytes()
    targets = rampload.Targets(base_url, ws_url, people.calls, people.tokens, rooms, people.artist_token,
                               people.artist_id, wav)
    ramp = rampload.Ramp(args.idle, args.up, args.hold, args.down)
    peak = rampload.Peak(args.api_rate, args.sessions, args.uploads, session_s=args.session_s,
                         chat_every_s=args.chat_every)
    timeline = Timeline()
    reader = _ReplicaLog(log_path)
    await _wait_for_minimum(reader, scaling)
    run = rampload.Run(ramp, peak)
    reader.t0_wall = time.time()
    say(f"ramp: {args.idle:g}s base, {args.up:g}s up, {args.hold:g}s hold, {args.down:g}s down, then the base "
        f"until replicas are back (at most {args.settle_max:g}s)")

    def done(t: float) -> bool:
        timeline.samples = reader.read()
        if t < ramp.load_end_s:
            return False
        back = all(sum(timeline.running(d, t)) <= scaling[d].min_replicas for d in DEPLOYMENTS)
        return back or t >= ramp.load_end_s + args.settle_max

    await rampload.drive(run, targets, done)
    timeline.samples = reader.read()
    return run, timeline


async def _preflight(ws_url: str, token: str, room: str) -> None:
    """Wait until ``WS /v1/ws`` joins a room (the gateway may still be deploying)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            async with connect(f"{ws_url}?token={token}", open_timeout=10, compression=None) as ws:
                await rampload.join(ws, room)
                return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ws_url} does not join rooms: {exc!r}") from exc
            await asyncio.sleep(1)


class _ReplicaLog:
    """The launcher's ``replicas {...}`` lines, read as they come (times relative to ``t0_wall``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.t0_wall = time.time()
        self.samples: list[tuple[float, dict]] = []

    def read(self) -> list[tuple[float, dict]]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            if line.startswith(REPLICAS_LINE):
                sample = json.loads(line.removeprefix(REPLICAS_LINE))
                if "deployments" in sample:
                    self.samples.append((sample["t"] - self.t0_wall, sample["deployments"]))
        return [(t, d) for t, d in self.samples]


async def _wait_for_minimum(reader: _ReplicaLog, scaling: dict) -> None:
    """Start the ramp from the minimum: replicas that deployment itself added must be gone."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        samples = reader.read()
        if samples:
            last = samples[-1][1]
            if all(last.get(d, {}).get("RUNNING", 0) == sum(last.get(d, {}).values()) == scaling[d].min_replicas
                   for d in DEPLOYMENTS):
                return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"replicas did not settle at their minimum within {START_TIMEOUT_S:g}s")


# --- the report ------------------------------------------------------------------------------------


def _verdict(run: rampload.Run, timeline: Timeline, scaling: dict) -> dict:
    ramp = run.ramp
    per: dict[str, dict] = {}
    for d in DEPLOYMENTS:
        start = scaling[d].min_replicas
        counts = [(t, deployments.get(d, {}).get("RUNNING", 0)) for t, deployments in timeline.samples if t >= 0]
        highest = max((n for _, n in counts), default=0)
        up_at = next((t for t, n in counts if n > start), None)
        added_at = next((t for t, _ in counts if sum(timeline.running(d, t)) > start), None)
        peak_at = next((t for t, n in counts if n == highest), None)
        back_at = None
        if up_at is not None:
            back_at = next((t for t, n in counts if t > peak_at and n <= start), None)
        per[d] = {"start": start, "max": highest, "up_after_s": None if up_at is None else up_at - ramp.idle_s,
                  "replica_start_s": None if up_at is None or added_at is None else up_at - added_at,
                  "back_after_s": None if back_at is None else back_at - ramp.load_end_s}
    scaled = [d for d in DEPLOYMENTS if per[d]["up_after_s"] is not None]
    return {
        "deployments": per, "scaled_up": bool(scaled),
        "scaled_down": bool(scaled) and all(per[d]["back_after_s"] is not None for d in scaled),
        "failed": sum(1 for s in run.samples if s.error),
        "errors": _error_kinds(run.samples),
    }


def _error_kinds(samples: list[rampload.Sample]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for s in samples:
        if s.error:
            kinds[f"{s.kind}: {s.error}"] = kinds.get(f"{s.kind}: {s.error}", 0) + 1
    return kinds


def _report(run: rampload.Run, timeline: Timeline, scaling: dict, verdict: dict, args: argparse.Namespace,
            load_before: tuple[float, float, float], elapsed: float) -> str:
    lines = [f"\n{os.cpu_count()} CPUs, load average (1, 5, 15 min) before the run: "
             + " ".join(f"{x:.2f}" for x in load_before), "", "== autoscaling settings used"]
    for d in DEPLOYMENTS:
        s = scaling[d]
        lines.append(f"{d}: replicas {s.min_replicas}-{s.max_replicas}, target_ongoing_requests "
                     f"{s.target_ongoing_requests:g}, max_ongoing_requests {s.max_ongoing_requests}, "
                     f"max_queued_requests {s.max_queued_requests}, upscale/downscale "
                     f"delay {s.upscale_delay_s:g}/{s.downscale_delay_s:g} s, metrics every {s.metrics_interval_s:g} s "
                     f"over {s.look_back_period_s:g} s")
    lines += ["", f"== timeline (peak: {args.api_rate:g} API req/s, {args.sessions} sessions of ~{args.session_s:g} s "
              f"chatting every {run.peak.chat_every_s:g} s, {args.uploads:g} uploads/s)", *_timeline(run, timeline,
                                                                                                     args.row_s)]
    lines += ["", "== per deployment"]
    for d, f in verdict["deployments"].items():
        up = "never" if f["up_after_s"] is None else f"{f['up_after_s']:.0f} s after the ramp started"
        back = "-" if f["up_after_s"] is None else (
            "not within the run" if f["back_after_s"] is None else f"{f['back_after_s']:.0f} s after the load fell"
            if f["back_after_s"] >= 0 else f"{-f['back_after_s']:.0f} s before the load fell (its load had dropped)")
        if f["replica_start_s"] is not None:
            up += f" (its first new replica ran {f['replica_start_s']:.0f} s after it was added)"
        lines.append(f"{d}: {f['start']} -> max {f['max']} running; scaled up {up}; back to {f['start']} {back}")
    lines += ["", "== totals"]
    for kind in ("api", "ws connect", "ws chat", "upload"):
        of_kind = [s for s in run.samples if s.kind == kind]
        latencies = sorted(s.latency_s for s in of_kind)
        lines.append(f"{kind}: {len(of_kind)} ({sum(1 for s in of_kind if s.error)} failed), p50 "
                     f"{percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms")
    if verdict["errors"]:
        lines.append(f"errors: {verdict['errors']}")
    lines += ["", f"verdict: scaled up: {_yes(verdict['scaled_up'])}; scaled down after: "
              f"{_yes(verdict['scaled_down'])}; failed requests: {verdict['failed']}",
              f"run took {elapsed:.0f} s (load {run.now():.0f} s)"]
    return "\n".join(lines)


def _timeline(run: rampload.Run, timeline: Timeline, row_s: float) -> Iterator[str]:
    header = (f"{'t s':>5}{'level':>6}{'API/s':>7}{'WS':>6}{'up/s':>6}{'api':>7}{'gateway':>8}"
              f"{'API p50/p99 ms':>16}{'in flight':>10}{'chat p50/p99 ms':>17}{'errors':>7}")
    yield header
    yield "-" * len(header)
    end = max((s.start for s in run.samples), default=0.0)
    t = 0.0
    while t <= end:
        window = [s for s in run.samples if t <= s.start < t + row_s]
        level = run.ramp.level(t + row_s / 2)
        replicas = [_replicas(timeline, d, t + row_s) for d in DEPLOYMENTS]
        yield (f"{t:>5.0f}{level:>6.2f}{run.peak.api_rate * level:>7.0f}{_joined(run, t + row_s):>6}"
               f"{run.peak.uploads_per_s * level:>6.2f}{replicas[0]:>7}{replicas[1]:>8}"
               f"{_pcts(window, 'api'):>16}{_in_flight(window, row_s):>10.1f}{_pcts(window, 'ws chat'):>17}"
               f"{sum(1 for s in window if s.error):>7}")
        t += row_s


def _joined(run: rampload.Run, at: float) -> int:
    """Sockets joined to their room at ``at`` (the gateway's ongoing requests, as the autoscaler counts)."""
    return next((n for t, n in reversed(run.sessions_joined) if t <= at), 0)


def _replicas(timeline: Timeline, deployment: str, at: float) -> str:
    running, starting = timeline.running(deployment, at)
    return f"{running}" + (f"(+{starting})" if starting else "")


def _pcts(window: list[rampload.Sample], kind: str) -> str:
    latencies = sorted(s.latency_s for s in window if s.kind == kind)
    if not latencies:
        return "-"
    return f"{percentile(latencies, 0.5) * 1000:.0f}/{percentile(latencies, 0.99) * 1000:.0f}"


def _in_flight(window: list[rampload.Sample], row_s: float) -> float:
    """API requests in flight on average (Little's law: their summed latency over the window): the
    ongoing requests Serve's autoscaler counts, proxy queue included."""
    return sum(s.latency_s for s in window if s.kind == "api") / row_s


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _measured(run: rampload.Run, timeline: Timeline) -> bool:
    """Every kind of load was answered at least once, and replicas were sampled."""
    answered = {s.kind for s in run.samples if not s.error}
    return bool(timeline.samples) and answered >= {"api", "ws connect", "ws chat", "upload"}


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; the launcher stopped, the database dropped")
        sys.exit(130)
