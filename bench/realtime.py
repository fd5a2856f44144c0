"""Realtime rooms under WebSocket load: the platform's edge and Serve transports against a ceiling.

    .venv/bin/python -m bench.realtime [--targets ceiling,edge,serve] [--scenarios room100,room1000,hold]
                                       [--procs 2] [--duration 15] [--warmup 5] [--hold 10000] ...

Targets, one after the other so that they never compete for the two cores, each a process group of
its own:

- ``ceiling``: ``bench/ceiling_server.py``, the simplest fast broadcast server (one process,
  websockets.asyncio, ``websockets.broadcast`` to a room's set), same protocol, nothing stored;
- ``edge`` and ``serve``: one platform, ``bench/realtime_launcher.py`` (``LocalPlatform`` as
  ``make up`` runs it) on a fresh ``vf_rtbench`` database of ``VERSEFLOW_DATABASE_URL``'s server
  (default: the local test server) and a per-run Redis prefix; ``edge`` is the realtime edge actor's
  websockets server (``VERSEFLOW_EDGE_PORT``), ``serve`` is ``WS /v1/ws`` through Serve's proxy. Their
  URLs come from ``GET /v1/realtime``; the known ports are the fallback (the report says when).

Scenarios, each with fresh rooms and connections (senders are registered users on the platform,
receivers carry tokens minted with the run's secret for users that need not exist):

- ``room100``: ``--small-rooms`` (10) rooms of ``--small-members`` (100), each fed ``--rate`` (20) chat
  messages a second by ``--senders`` (5) of its members at rate/senders each (under the platform's
  per-connection limit), rooms phase-shifted: 200 msg/s in, 20,000 deliveries/s out. Ten rooms rather
  than one, so that the deliveries per second equal those of ``room1000`` and rooms are many.
- ``room1000``: one room of ``--large-members`` (1,000) at ``--rate``: 20,000 deliveries/s. Then, on
  the same connections, the peak pass: ``--peak-senders`` (20) members send closed loop, each its next
  message when its previous one came back, at most ``--peak-rate`` (15) a second each: the delivered
  messages/s there is the throughput the 50 %-of-the-ceiling target is about (at a fixed 20 msg/s both
  deliver everything and the ratio says nothing).
- ``hold``: ``--hold`` (10,000) connections in rooms of ``--large-members``, one of them fed ``--rate``,
  the others idle but for pings: connections held at the end, memory per connection, the active
  room's latency with 10,000 sockets open.

Each scenario: connect with at most ``--connect-concurrency`` (200) handshakes+joins in flight (split
over the generators), let the server settle, ``--warmup`` seconds of load, ``--duration`` measured
seconds, ``--drain`` seconds for the last deliveries, then the generators exit (no closing
handshakes) and the server is left to settle before the next scenario.

Figures: latency is the receiver's ``time.time()`` minus the sender's, carried in the text, for every
delivery of a message sent in the window that arrives before the drain ends; msg/s is those deliveries
over the window, and the delivery percentage compares them with sent x members (a delivery later than
the drain counts as missing, and the percentiles are over what arrived). Memory per connection is the
RSS growth of the server process(es) from the fresh server (before the first scenario) to all of a
scenario's connections joined, over those connections. Server CPU % (100 = one core)
is over the window: for ``edge`` the edge actor's process, for ``serve`` Serve's proxy and the WS
gateway replica, and for both also the sum over all of the platform's Ray workers ("all"). The load
comes from ``--procs`` (2) processes of ``bench/rtload.py``, whose CPU % and event-loop lag are
reported so that a generator at its limit is visible (its docstring explains the receive path).

Output: a table per scenario (each target, then each platform transport as a ratio of the ceiling),
the peak pass, the verdict on the edge's targets (10,000 connections held; p99 under 50 ms in the
1,000-member room with at least 99.9 % delivered; peak deliveries at least 50 % of the ceiling's). Exit
status 0 only when all three were measured and met. Figures go to ``bench/results/realtime-<time>.json``,
server output to ``realtime-<time>-<target>.log``, the generators' to ``realtime-<time>-<target>-gen.log``.

Clean-up runs on success, on errors, on Ctrl-C and on SIGTERM: generators are killed, each server gets
SIGINT (the launcher then stops the platform in order), then its process group and any process left
of its tree are killed; the database is dropped and the run's Redis keys deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import secrets
import signal
import sys
import time
import traceback
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench import harness
from bench.harness import ROOT, clean_up
from bench.harness import admin as _admin
from bench.harness import free_port as _free_port
from bench.harness import process_group as _process_group
from bench.harness import say as _say
from bench.harness import tail as _tail
from bench.harness import wait_for_line as _wait_for_line
from bench.harness import wait_healthy as _wait_healthy
from verseflow.security import issue_access_token
from verseflow.settings import Settings

BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
BENCH_DATABASE = f"vf_rtbench_{secrets.token_hex(4)}"  # per run: runs may overlap (tests, CI)
TARGETS = ("ceiling", "edge", "serve")
SCENARIOS = ("room100", "room1000", "hold")
TARGET_HELD = 10_000
TARGET_P99_MS = 50.0
TARGET_DELIVERED = 0.999
TARGET_PEAK_RATIO = 0.5
START_TIMEOUT_S = 240.0
#: ``--smoke``: sizes that prove the whole benchmark runs (connect, both passes, every scenario, the
#: report) in about a minute per platform, without saying anything about the targets.
SMOKE = {"procs": 1, "rate": 4.0, "senders": 2, "small_rooms": 2, "small_members": 10, "large_members": 40,
         "hold": 120, "warmup": 0.5, "duration": 1.5, "drain": 1.5, "peak_senders": 4, "peak_rate": 5.0,
         "peak_warmup": 0.5, "peak_duration": 1.5, "connect_concurrency": 20, "connect_timeout": 60.0}
ANSWER_TIMEOUT_S = 120.0  # beyond the phase itself
SETTLE_CPU_PCT = 25.0  # the server counts as idle again below this (100 = one core)
SETTLE_MAX_S = 30.0
GENERATOR_BUSY_PCT = 90.0  # a generator above this is near its limit: the report warns
PASSWORD = "bench password 1"
_GENERATOR_PIDS: set[int] = set()  # killed on the way out, whatever happened


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    sizes: tuple[int, ...]  # members per room
    active: int  # the first ``active`` rooms get senders
    peak: bool


@dataclass
class Server:
    """A running target: where to connect and which processes are it."""

    target: str
    url: str
    headline: str  # the group whose CPU and memory the table shows first
    groups: Callable[[], dict[str, list[psutil.Process]]]
    alive: Callable[[], bool]
    notes: list[str] = field(default_factory=list)
    settle_max_s: float = SETTLE_MAX_S


@dataclass
class Identities:
    """Tokens and rooms for one target: minted receivers (all targets), senders, a room factory."""

    receivers: list[str]
    senders: list[str]
    new_room: Callable[[], object]  # async () -> room id


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` cleans up as Ctrl-C does
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where a shell ignores it (background job)
    admin_url = harness.admin_url()
    settings = harness.run_settings(BENCH_DATABASE, "rtbench")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    load_before = os.getloadavg()
    scenarios = _scenarios(args)
    receivers = _mint(settings, max(sum(s.sizes) for s in scenarios))
    platform_targets = [t for t in args.targets if t != "ceiling"]
    runs: dict[str, dict] = {}
    started = time.monotonic()
    try:
        if "ceiling" in args.targets:
            runs["ceiling"] = _guarded("ceiling", lambda: _run_ceiling(settings, receivers, scenarios, args, stamp))
        if platform_targets:
            asyncio.run(_admin(admin_url, f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)",
                               f"CREATE DATABASE {BENCH_DATABASE}"))
            failed = _guarded("platform", lambda: _run_platform(platform_targets, settings, receivers, scenarios,
                                                                args, stamp, runs))
            for target in platform_targets:
                runs.setdefault(target, failed)
    finally:
        _kill_generators()
        if platform_targets:
            asyncio.run(clean_up(admin_url, settings, BENCH_DATABASE))
    _say(f"all targets done in {time.monotonic() - started:.0f}s")

    report, verdict = _report(runs, scenarios, args, load_before)
    print(report)
    result_file = RESULTS / f"realtime-{stamp}.json"
    result_file.write_text(json.dumps({
        "config": vars(args), "cpus": os.cpu_count(), "load_average_before": load_before,
        "targets_met": verdict, "results": runs,
    }, indent=2, default=str))
    print(f"\nfigures written to {result_file.relative_to(ROOT)}")
    if args.smoke:
        problems = _smoke_problems(runs, scenarios)
        print("smoke run: " + ("every target measured every scenario" if not problems else "; ".join(problems)))
        return 0 if not problems else 1
    return 0 if verdict.get("all") else 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="WebSocket rooms: edge and Serve transports against a ceiling.")
    parser.add_argument("--targets", type=_names(TARGETS), default=list(TARGETS),
                        help="comma-separated, of ceiling,edge,serve (default: all, in that order)")
    parser.add_argument("--scenarios", type=_names(SCENARIOS), default=list(SCENARIOS),
                        help="comma-separated, of room100,room1000,hold (default: all)")
    parser.add_argument("--procs", type=int, default=2, help="generator processes")
    parser.add_argument("--rate", type=float, default=20.0, help="chat messages/s into each active room")
    parser.add_argument("--senders", type=int, default=5, help="sender connections per active room")
    parser.add_argument("--small-rooms", type=int, default=10, help="rooms of room100")
    parser.add_argument("--small-members", type=int, default=100, help="members per room in room100")
    parser.add_argument("--large-members", type=int, default=1000, help="members of room1000 and of hold's rooms")
    parser.add_argument("--hold", type=int, default=TARGET_HELD, help="connections in the hold scenario")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds for deliveries after the window")
    parser.add_argument("--peak-senders", type=int, default=20, help="closed-loop senders of the peak pass")
    parser.add_argument("--peak-rate", type=float, default=15.0, help="at most this many msg/s per peak sender")
    parser.add_argument("--peak-warmup", type=float, default=3.0, help="peak pass seconds before measuring")
    parser.add_argument("--peak-duration", type=float, default=10.0, help="peak pass measured seconds")
    parser.add_argument("--connect-concurrency", type=int, default=200, help="handshakes+joins in flight, in all")
    parser.add_argument("--connect-timeout", type=float, default=120.0, help="seconds for a scenario's connections")
    parser.add_argument("--ping-interval", type=float, default=20.0, help="seconds between a connection's pings")
    parser.add_argument("--recv", choices=("fast", "loop", "json"), default="fast",
                        help="generator receive path (rtload.py explains)")
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate, as browsers do")
    parser.add_argument("--smoke", action="store_true",
                        help="every target and scenario at tiny sizes for seconds (make test): exit 0 when each "
                             "was measured, every connection joined and every phase delivered, whatever the targets")
    args = parser.parse_args(argv)
    if args.smoke:
        for name, value in SMOKE.items():
            setattr(args, name, value)
    if args.senders < 1 or args.peak_senders < 1 or args.procs < 1:
        parser.error("--senders, --peak-senders and --procs must be at least 1")
    if max(args.senders, args.peak_senders) > min(args.small_members, args.large_members):
        parser.error("a room cannot have more senders than members")
    return args


def _names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = set(names) - set(allowed)
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
        return [name for name in allowed if name in names]

    return parse


def _scenarios(args: argparse.Namespace) -> list[Scenario]:
    large = args.large_members
    hold_rooms = (large,) * (args.hold // large) + ((args.hold % large,) if args.hold % large else ())
    every = {
        "room100": Scenario(
            "room100", f"{args.small_rooms} rooms x {args.small_members} members, {args.rate:g} msg/s into each",
            (args.small_members,) * args.small_rooms, args.small_rooms, False),
        "room1000": Scenario("room1000", f"1 room x {large} members, {args.rate:g} msg/s", (large,), 1, True),
        "hold": Scenario(
            "hold", f"{args.hold} connections in {len(hold_rooms)} rooms of up to {large}, one room at "
                    f"{args.rate:g} msg/s, the others idle", hold_rooms, 1, False),
    }
    return [every[name] for name in args.scenarios]


def _settle_max(args: argparse.Namespace) -> float:
    """A smoke run's connections are few: a busy machine (tests beside it) must not hold it up."""
    return 1.0 if args.smoke else SETTLE_MAX_S


def _senders_needed(scenarios: list[Scenario], args: argparse.Namespace) -> int:
    return max(s.active * (max(args.senders, args.peak_senders) if s.peak else args.senders) for s in scenarios)


def _mint(settings: Settings, count: int) -> list[str]:
    """Receivers' tokens: signed with the run's secret for users that need not exist."""
    return [issue_access_token(uuid.uuid4(), "listener", secret=settings.secret(), ttl_s=3600,
                               issuer=settings.jwt_issuer)[0] for _ in range(count)]


def _guarded(name: str, run: Callable[[], dict]) -> dict:
    """Run one target (or the platform's); an error becomes its result, so the others still report."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - reported, the run goes on
        traceback.print_exc()
        _say(f"{name}: failed: {exc!r}")
        return {"error": f"{type(exc).__name__}: {exc}"}


# --- the ceiling -----------------------------------------------------------------------------------


def _run_ceiling(settings: Settings, receivers: list[str], scenarios: list[Scenario],
                 args: argparse.Namespace, stamp: str) -> dict:
    port = _free_port()
    log_path = RESULTS / f"realtime-{stamp}-ceiling.log"
    command = [sys.executable, "-m", "bench.ceiling_server", str(port)]
    env = {**os.environ, "VERSEFLOW_JWT_SECRET": settings.secret(), "VERSEFLOW_JWT_ISSUER": settings.jwt_issuer}
    with _process_group("ceiling", command, env, log_path) as process:
        _wait_for_line(process, log_path, "listening on")
        server_process = psutil.Process(process.pid)
        server = Server("ceiling", f"ws://127.0.0.1:{port}/v1/ws", "server", lambda: {"server": [server_process]},
                        lambda: process.poll() is None, settle_max_s=_settle_max(args))

        async def room() -> str:
            return str(uuid.uuid4())

        identities = Identities(receivers, _mint(settings, _senders_needed(scenarios, args)), room)
        return asyncio.run(_run_target(server, identities, scenarios, args, stamp))


# --- the platform ----------------------------------------------------------------------------------


def _run_platform(targets: list[str], settings: Settings, receivers: list[str], scenarios: list[Scenario],
                  args: argparse.Namespace, stamp: str, runs: dict[str, dict]) -> dict:
    http_port, edge_port, metrics_port = _free_port(), _free_port(), _free_port()
    env = {
        **os.environ,
        "VERSEFLOW_DATABASE_URL": settings.database_url, "VERSEFLOW_REDIS_URL": settings.redis_url,
        "VERSEFLOW_REDIS_PREFIX": settings.redis_prefix, "VERSEFLOW_JWT_SECRET": settings.secret(),
        "VERSEFLOW_HTTP_PORT": str(http_port), "VERSEFLOW_EDGE_PORT": str(edge_port),
        "VERSEFLOW_RAY_DASHBOARD": "false", "VERSEFLOW_RAY_METRICS_PORT": str(metrics_port),
        "VERSEFLOW_LOGIN_ATTEMPTS_PER_IP": "1000000", "VERSEFLOW_ACCESS_TOKEN_TTL_S": "3600",
    }
    log_path = RESULTS / f"realtime-{stamp}-platform.log"
    command = [sys.executable, "-m", "bench.realtime_launcher"]
    with _process_group("platform", command, env, log_path) as process:
        _wait_for_line(process, log_path, "platform started")
        base_url = f"http://127.0.0.1:{http_port}"
        _wait_healthy(process, base_url, log_path)
        launcher = psutil.Process(process.pid)
        accounts = asyncio.run(_platform_accounts(base_url, _senders_needed(scenarios, args)))
        urls, how = asyncio.run(_realtime_urls(base_url, accounts["host"], http_port, edge_port))
        _say(f"platform: realtime URLs {urls} ({how})")
        for target in targets:
            server = Server(target, urls[target], target, lambda target=target: _platform_groups(launcher, target),
                            lambda: process.poll() is None, notes=[f"URL {urls[target]} ({how})"],
                            settle_max_s=_settle_max(args))
            identities = Identities(receivers, accounts["senders"],
                                    lambda: create_room(base_url, accounts["host"]))
            runs[target] = _guarded(target, lambda server=server, identities=identities: asyncio.run(
                _run_target(server, identities, scenarios, args, stamp)))
            if process.poll() is not None:
                raise RuntimeError(f"the platform exited with {process.returncode}:\n{_tail(log_path)}")
    return {"error": "not run"}


async def _platform_accounts(base_url: str, senders: int) -> dict:
    """A host (artist) who creates the rooms and ``senders`` listeners, registered and logged in through
    the API, so that their chat messages belong to real users."""
    tag = secrets.token_hex(3)
    semaphore = asyncio.Semaphore(4)
    async with aiohttp.ClientSession(base_url, timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def account(name: str, role: str) -> str:
            email = f"rt-{tag}-{name}@example.com"
            async with semaphore:
                async with http.post("/v1/auth/register", json={
                        "email": email, "password": PASSWORD, "display_name": f"Bench {name}", "role": role}) as r:
                    if r.status != 201:
                        raise RuntimeError(f"register {email}: HTTP {r.status} {await r.text()}")
                async with http.post("/v1/auth/token", data={"username": email, "password": PASSWORD}) as r:
                    if r.status != 200:
                        raise RuntimeError(f"login {email}: HTTP {r.status} {await r.text()}")
                    return (await r.json())["access_token"]

        started = time.monotonic()
        host = await account("host", "artist")
        tokens = await asyncio.gather(*(account(f"sender{i}", "listener") for i in range(senders)))
        _say(f"platform: registered and logged in {senders + 1} users in {time.monotonic() - started:.1f}s")
        return {"host": host, "senders": list(tokens)}


async def create_room(base_url: str, host_token: str) -> str:
    async with aiohttp.ClientSession(base_url, timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.post("/v1/rooms", json={"name": f"bench {secrets.token_hex(3)}", "visibility": "public"},
                             headers={"Authorization": f"Bearer {host_token}"}) as response:
            if response.status != 201:
                raise RuntimeError(f"POST /v1/rooms: HTTP {response.status} {await response.text()}")
            return str((await response.json())["id"])


async def _realtime_urls(base_url: str, token: str, http_port: int, edge_port: int) -> tuple[dict[str, str], str]:
    known = {"serve": f"ws://127.0.0.1:{http_port}/v1/ws", "edge": f"ws://127.0.0.1:{edge_port}/v1/ws"}
    async with aiohttp.ClientSession(base_url, timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get("/v1/realtime", headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status != 200:
                return known, f"GET /v1/realtime answered {response.status}: the known ports"
            body = await response.json()
    return {"serve": body.get("serve") or known["serve"], "edge": body.get("edge") or known["edge"]}, \
        "from GET /v1/realtime"


def _platform_groups(launcher: psutil.Process, target: str) -> dict[str, list[psutil.Process]]:
    """The platform's processes by role, found by their titles (``ray::EdgeGateway`` and so on)."""
    tree = [launcher]
    with contextlib.suppress(psutil.Error):
        tree += launcher.children(recursive=True)
    titled = []
    for process in tree:
        with contextlib.suppress(psutil.Error):
            titled.append((" ".join(process.cmdline()), process))
    workers = [p for title, p in titled if title.startswith("ray::")]
    if target == "edge":
        transport = [p for title, p in titled if title.startswith("ray::EdgeGateway")]
    else:
        transport = [p for title, p in titled if title.startswith("ray::ProxyActor")
                     or (title.startswith("ray::ServeReplica") and "gateway" in title.lower())]
    return {target: transport, "all": workers, "platform": tree}


# --- one target ------------------------------------------------------------------------------------


async def _run_target(server: Server, identities: Identities, scenarios: list[Scenario], args: argparse.Namespace,
                      stamp: str) -> dict:
    server.notes += await _preflight(server, identities)
    await _settle(server)
    groups = server.groups()
    if not groups[server.headline]:
        server.notes.append(f"no process of {server.headline!r} found by title: its CPU and memory read 0")
    rss_fresh = _rss(groups)
    result: dict = {"url": server.url, "notes": server.notes, "rss_fresh_mb": rss_fresh, "scenarios": {}}
    for scenario in scenarios:
        try:
            result["scenarios"][scenario.name] = await _scenario(server, identities, scenario, rss_fresh, args, stamp)
        except Exception as exc:  # noqa: BLE001 - one scenario's failure is reported, the next runs
            traceback.print_exc()
            _say(f"{server.target}: {scenario.name} failed: {exc!r}")
            result["scenarios"][scenario.name] = {"error": f"{type(exc).__name__}: {exc}"}
        if not server.alive():
            raise RuntimeError(f"{server.target}: the server exited during {scenario.name}")
        await _settle(server)
    return result


async def _preflight(server: Server, identities: Identities) -> list[str]:
    """Wait until the transport answers the protocol (the platform may still be deploying), check one
    chat message end to end, and note deviations from the protocol that the load would not show."""
    room = await identities.new_room()
    deadline = time.monotonic() + START_TIMEOUT_S
    notes = []
    while True:
        try:
            async with connect(f"{server.url}?token={identities.senders[0]}", compression=None,
                               open_timeout=10, max_size=2**24) as ws:
                await ws.send(json.dumps({"type": "join", "room": room}))
                joined = await _expect(ws, "joined")
                await ws.send(json.dumps({"type": "chat", "room": room, "text": "preflight"}))
                chat = await _expect(ws, "chat")
            break
        except (OSError, TimeoutError, InvalidStatus, ConnectionClosed) as exc:
            if time.monotonic() > deadline or not server.alive():
                raise RuntimeError(f"{server.target}: {server.url} does not answer the protocol: {exc!r}") from exc
            await asyncio.sleep(2)
    missing = [key for key in ("room", "seq", "members") if key not in joined]
    missing += [f"chat.{key}" for key in ("room", "seq", "from", "text", "ts") if key not in chat]
    if missing:
        notes.append(f"fields missing: {', '.join(missing)}")
    try:
        async with connect(f"{server.url}?token=forged", compression=None, open_timeout=10) as ws:
            await ws.recv()
        notes.append("a forged token was not refused")
    except ConnectionClosed as exc:
        if not exc.rcvd or exc.rcvd.code != 4401:
            notes.append(f"a forged token closed with {exc.rcvd.code if exc.rcvd else 'no close frame'}, not 4401")
    except InvalidStatus as exc:
        notes.append(f"a forged token was refused with HTTP {exc.response.status_code}, not close code 4401")
    _say(f"{server.target}: {server.url} answers the protocol" + (f" ({'; '.join(notes)})" if notes else ""))
    return notes


async def _expect(ws, kind: str) -> dict:
    async with asyncio.timeout(30):
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == kind:
                return message
            if message.get("type") == "error":
                raise RuntimeError(f"the server answered {message}")


async def _scenario(server: Server, identities: Identities, scenario: Scenario, rss_fresh: dict[str, float],
                    args: argparse.Namespace, stamp: str) -> dict:
    """Connect, measure the steady pass (and the peak pass), and collect the figures."""
    target = server.target
    rooms = [await identities.new_room() for _ in scenario.sizes]
    plans, steady, peak = _plan(scenario, rooms, identities, args)
    planned = sum(scenario.sizes)
    _say(f"{target}: {scenario.name}: {scenario.title}; connecting {planned}")
    log_path = RESULTS / f"realtime-{stamp}-{target}-gen.log"
    generators = [await _Generator.start(log_path) for _ in plans]
    try:
        rss_before = _rss(server.groups())
        for generator, plan in zip(generators, plans, strict=True):
            await generator.ask({**plan, "url": server.url, "name": f"g{generator.process.pid}",
                                 "concurrency": max(1, args.connect_concurrency // len(plans)),
                                 "connect_timeout": args.connect_timeout, "ping_interval": args.ping_interval,
                                 "deflate": args.deflate, "recv": args.recv})
        ready = await asyncio.gather(*(g.answer(args.connect_timeout + ANSWER_TIMEOUT_S) for g in generators))
        connected = sum(r["connected"] for r in ready)
        failed = _merge_counts(r["failed"] for r in ready)
        connect_s = max(r["connect_s"] for r in ready)
        _say(f"{target}: {scenario.name}: {connected} of {planned} connected and joined in {connect_s:.1f}s"
             + (f"; failed: {failed}" if failed else ""))
        await _settle(server)
        rss_connected = _rss(server.groups())
        phases = {"steady": await _phase(server, generators, "steady", steady, args.warmup, args.duration, args)}
        if scenario.peak:
            phases["peak"] = await _phase(server, generators, "peak", peak, args.peak_warmup, args.peak_duration, args)
        rss_end = _rss(server.groups())
        held = sum(p["open"] for p in _last_answers(phases))
        closed = _merge_counts(p["closed"] for p in _last_answers(phases))
    except BaseException:  # Ctrl-C or a failure mid-phase: do not wait for the generators to finish it
        for generator in generators:
            generator.kill()
        raise
    finally:
        await asyncio.gather(*(g.stop() for g in generators))
    def per_conn(base: dict[str, float]) -> dict[str, float]:
        return {group: (rss_connected[group] - base.get(group, 0.0)) * 1024 / connected if connected else 0.0
                for group in rss_connected}

    return {
        "title": scenario.title, "planned": planned, "connected": connected, "connect_failed": failed,
        "connect_s": connect_s, "held": held, "closed": closed,
        "rss_mb": {"before": rss_before, "connected": rss_connected, "end": rss_end},
        "kb_per_conn": per_conn(rss_fresh), "kb_per_conn_this_scenario": per_conn(rss_before),
        "phases": phases,
    }


def _plan(scenario: Scenario, rooms: list[str], identities: Identities, args: argparse.Namespace
          ) -> tuple[list[dict], list[list], list[list]]:
    """Every connection (token, room) dealt round-robin over the generators, so that each holds part of
    every room; the steady senders (rate and phase) and the peak senders, per generator."""
    procs = args.procs
    plans: list[dict] = [{"connections": []} for _ in range(procs)]
    steady: list[list] = [[] for _ in range(procs)]
    peak: list[list] = [[] for _ in range(procs)]
    senders = iter(identities.senders)
    receivers = iter(identities.receivers)
    position = 0
    for r, (room, size) in enumerate(zip(rooms, scenario.sizes, strict=True)):
        room_senders = 0
        if r < scenario.active:
            room_senders = max(args.senders, args.peak_senders) if scenario.peak else args.senders
        for k in range(size):
            g = position % procs
            position += 1
            connections = plans[g]["connections"]
            local = len(connections)
            if k < room_senders:
                connections.append([next(senders), room])
                if k < args.senders:  # evenly spaced within the room, rooms shifted against each other
                    steady[g].append([local, args.rate / args.senders, (k + r / scenario.active) / args.rate])
                if scenario.peak and k < args.peak_senders:
                    peak[g].append([local, args.peak_rate])
            else:
                connections.append([next(receivers), room])
    return plans, steady, peak


async def _phase(server: Server, generators: list[_Generator], kind: str, senders: list[list], warmup: float,
                 duration: float, args: argparse.Namespace) -> dict:
    target = server.target
    t0 = time.time() + 1.0
    start, end = t0 + warmup, t0 + warmup + duration
    for generator, specs in zip(generators, senders, strict=True):
        await generator.ask({"cmd": kind, "t0": t0, "warmup": warmup, "duration": duration, "drain": args.drain,
                             "senders": specs})
    _say(f"{target}: {kind} pass: {warmup:g}s warm-up, {duration:g}s measured")
    await asyncio.sleep(max(0.0, start - time.time()))
    generator_processes = {"generators": [psutil.Process(g.process.pid) for g in generators]}
    cpu_a, busy_a, wall_a = _cpu(server.groups()), _busy(), time.monotonic()
    gen_a = _cpu_each(generator_processes["generators"])
    await asyncio.sleep(max(0.0, end - time.time()))
    cpu_b, busy_b, wall = _cpu(server.groups()), _busy(), time.monotonic() - wall_a
    gen_b = _cpu_each(generator_processes["generators"])
    answers = await asyncio.gather(*(g.answer(args.drain + ANSWER_TIMEOUT_S) for g in generators))

    latencies = array("f")
    for answer in answers:
        latencies.frombytes(base64.b64decode(answer.pop("latencies_ms")))
    ordered = sorted(latencies)
    sent = _merge_counts(a["sent"] for a in answers)
    members = _merge_counts(a["members"] for a in answers)
    expected = sum(count * members.get(room, 0) for room, count in sent.items())
    delivered = sum(a["delivered"] for a in answers)
    result = {
        "duration_s": duration, "sent": sum(sent.values()), "sent_per_s": sum(sent.values()) / duration,
        "expected": expected, "delivered": delivered, "msgs_per_s": delivered / duration,
        "delivered_pct": 100.0 * delivered / expected if expected else 0.0,
        "p50_ms": _pick(ordered, 0.50), "p95_ms": _pick(ordered, 0.95), "p99_ms": _pick(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else 0.0,
        "cpu_pct": {group: _pct(cpu_a[group], cpu_b[group], wall) for group in cpu_b},
        "machine_cpu_pct": (busy_b - busy_a) / wall * 100,
        "generator_cpu_pct": [round((b - a) / wall * 100, 1) for a, b in zip(gen_a, gen_b, strict=True)],
        "other_cpu_pct": 0.0,  # below: the machine less the server's processes and the generators
        "generator_loop_lag_p99_ms": max(a["loop_lag_ms"]["p99"] for a in answers),
        "send_lag_p99_ms": max(a["send_lag_ms"]["p99"] for a in answers),
        "other_messages": sum(a["other"] for a in answers), "errors": sum(a["errors"] for a in answers),
        "error_samples": [s for a in answers for s in a["error_samples"]][:5],
        "send_errors": _merge_counts(a["send_errors"] for a in answers),
        "echo_timeouts": sum(a["echo_timeouts"] for a in answers),
        "generators": answers,  # each one's own figures, less its latencies
    }
    server_total = result["cpu_pct"].get("platform", result["cpu_pct"][server.headline])
    result["other_cpu_pct"] = max(0.0, result["machine_cpu_pct"] - server_total - sum(result["generator_cpu_pct"]))
    _say(f"{target}: {kind}: {result['msgs_per_s']:.0f} deliveries/s ({result['delivered_pct']:.2f} %), "
         f"p50/p95/p99 {result['p50_ms']:.1f}/{result['p95_ms']:.1f}/{result['p99_ms']:.1f} ms, "
         f"server CPU {result['cpu_pct'].get(server.headline, 0):.0f} %, "
         f"generators {'/'.join(f'{c:.0f}' for c in result['generator_cpu_pct'])} %, "
         f"anything else {result['other_cpu_pct']:.0f} %")
    return result


def _last_answers(phases: dict[str, dict]) -> list[dict]:
    return list(phases.values())[-1]["generators"]


class _Generator:
    """One ``rtload.py`` process, a session of its own (Ctrl-C reaches this process only, which kills it)."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @classmethod
    async def start(cls, log_path: Path) -> _Generator:
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.rtload", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=log, cwd=ROOT, start_new_session=True, limit=2**28)
        _GENERATOR_PIDS.add(process.pid)
        return cls(process, log_path)

    async def ask(self, payload: dict) -> None:
        self.process.stdin.write(json.dumps(payload).encode() + b"\n")
        await self.process.stdin.drain()

    async def answer(self, within_s: float) -> dict:
        line = await asyncio.wait_for(self.process.stdout.readline(), within_s)
        if not line:
            raise RuntimeError(f"generator {self.process.pid} exited:\n{_tail(self.log_path)}")
        return json.loads(line)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.ask({"cmd": "stop"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 10)
        self.kill()
        await self.process.wait()
        _GENERATOR_PIDS.discard(self.process.pid)


def _kill_generators() -> None:
    for pid in list(_GENERATOR_PIDS):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _GENERATOR_PIDS.discard(pid)


# --- measuring the server --------------------------------------------------------------------------


def _cpu(groups: dict[str, list[psutil.Process]]) -> dict[str, dict[int, float]]:
    """CPU seconds (user + system) so far, per process, per group."""
    snapshot: dict[str, dict[int, float]] = {}
    for group, processes in groups.items():
        snapshot[group] = {}
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                snapshot[group][process.pid] = times.user + times.system
    return snapshot


def _cpu_each(processes: list[psutil.Process]) -> list[float]:
    seconds = []
    for process in processes:
        try:
            times = process.cpu_times()
            seconds.append(times.user + times.system)
        except psutil.Error:
            seconds.append(0.0)
    return seconds


def _pct(before: dict[int, float], after: dict[int, float], wall: float) -> float:
    """CPU % of one core over the window; a process born during it counts from zero."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items()) / wall * 100


def _busy() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _rss(groups: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """Resident MB per group."""
    sizes = {}
    for group, processes in groups.items():
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        sizes[group] = total / 2**20
    return sizes


async def _settle(server: Server) -> None:
    """Wait (at most ``settle_max_s``) until the server's processes are nearly idle: closing 10,000
    sockets, or presence storms after joins, must not spill into the next measurement."""
    group = "all" if "all" in server.groups() else server.headline
    deadline = time.monotonic() + server.settle_max_s
    started = time.monotonic()
    while time.monotonic() < deadline and server.alive():
        before, wall = _cpu(server.groups()), time.monotonic()
        await asyncio.sleep(0.5)
        if _pct(before[group], _cpu(server.groups())[group], time.monotonic() - wall) < SETTLE_CPU_PCT:
            break
    if time.monotonic() - started > 1:
        _say(f"{server.target}: settled in {time.monotonic() - started:.1f}s")


# --- processes -------------------------------------------------------------------------------------


# --- the report ------------------------------------------------------------------------------------


def _report(runs: dict[str, dict], scenarios: list[Scenario], args: argparse.Namespace,
            load_before: tuple[float, float, float]) -> tuple[str, dict]:
    load = " ".join(f"{x:.2f}" for x in load_before)
    lines = [f"\n{os.cpu_count()} CPUs, load average (1, 5, 15 min) before the run: {load}; "
             f"{args.procs} generator processes, receive path '{args.recv}', "
             f"permessage-deflate {'offered' if args.deflate else 'not offered'}"]
    for target, run in runs.items():
        if "error" in run:
            lines.append(f"{target}: FAILED: {run['error']}")
        elif run.get("notes"):
            lines.append(f"{target}: {'; '.join(run['notes'])}")
    header = (f"{'target':<9}{'held':>13}{'conn s':>8}{'msg/s':>9}{'deliv %':>9}{'p50 ms':>8}{'p95 ms':>8}"
              f"{'p99 ms':>8}{'max ms':>8}{'CPU %':>7}{'all %':>7}{'KB/c':>7}{'all KB/c':>9}{'gen CPU %':>11}"
              f"{'gen lag':>8}")
    for scenario in scenarios:
        lines += ["", f"{scenario.name}: {scenario.title}; {args.warmup:g}s warm-up, {args.duration:g}s measured",
                  header, "-" * len(header)]
        ceiling = _steady(runs, "ceiling", scenario.name)
        for target, run in runs.items():
            figures = run.get("scenarios", {}).get(scenario.name)
            if not figures or "error" in figures:
                lines.append(f"{target:<9}FAILED: {(figures or run).get('error', 'not run')}")
                continue
            lines.append(_row(target, figures))
            if target != "ceiling" and ceiling:
                lines.append(_ratio_row(figures, ceiling))
            if figures["connect_failed"]:
                lines.append(f"{'':<9}connections that failed: {figures['connect_failed']}")
            if figures["closed"]:
                lines.append(f"{'':<9}connections closed by the end: {figures['closed']}")
            steady = figures["phases"]["steady"]
            if steady["errors"] or steady["send_errors"]:
                lines.append(f"{'':<9}errors: {steady['errors']} {steady['error_samples'][:2]} "
                             f"send errors: {steady['send_errors']}")
    if any(s.peak for s in scenarios):
        header = (f"{'target':<9}{'senders':>8}{'sent/s':>9}{'msg/s':>9}{'ratio':>8}{'p50 ms':>8}{'p99 ms':>8}"
                  f"{'CPU %':>7}{'all %':>7}{'msg/core-s':>11}{'machine %':>10}{'other %':>8}{'gen CPU %':>11}"
                  f"{'gen lag':>8}")
        lines += ["", f"peak: room1000, {args.peak_senders} senders closed loop (at most {args.peak_rate:g} msg/s "
                      f"each), {args.peak_warmup:g}s warm-up, {args.peak_duration:g}s measured", header,
                  "-" * len(header)]
        ceiling_peak = _peak(runs, "ceiling")
        for target in runs:
            peak = _peak(runs, target)
            if not peak:
                continue
            ratio = f"{peak['msgs_per_s'] / ceiling_peak['msgs_per_s']:.2f}x" if ceiling_peak else "-"
            headline = _headline(target)
            all_cpu = peak["cpu_pct"].get("all", peak["cpu_pct"].get(headline, 0))
            per_core = f"{peak['msgs_per_s'] / all_cpu * 100:.0f}" if all_cpu else "-"
            lines.append(
                f"{target:<9}{args.peak_senders:>8}{peak['sent_per_s']:>9.0f}{peak['msgs_per_s']:>9.0f}{ratio:>8}"
                f"{peak['p50_ms']:>8.1f}{peak['p99_ms']:>8.1f}{peak['cpu_pct'].get(headline, 0):>7.0f}"
                f"{all_cpu:>7.0f}{per_core:>11}{peak['machine_cpu_pct']:>10.0f}{peak['other_cpu_pct']:>8.0f}"
                f"{_gen_cpu(peak):>11}{peak['generator_loop_lag_p99_ms']:>8.1f}")
    lines += ["",
              f"CPU %: of one core over the window (the machine has {os.cpu_count() * 100} %). 'CPU %' and 'KB/c': the",
              "edge actor's process, Serve's proxy and WS gateway replica, or the ceiling; 'all': every Ray worker of",
              "the platform. KB/c: RSS growth from the fresh server to all connections joined, per connection.",
              "'held': open at the end / planned. 'gen CPU %': per generator; 'gen lag': their p99 event-loop lag, ms.",
              "'other %': the machine's busy time less the server's processes and the generators (on a shared",
              "machine, what else ran). 'msg/core-s': peak deliveries per second of CPU of 'all' (less sensitive to",
              "what else runs than the raw peak, which is what the target compares)."]
    busy = [f"{t}/{s}" for t, run in runs.items() for s, f in run.get("scenarios", {}).items() if "phases" in f
            and any(max(p["generator_cpu_pct"]) > GENERATOR_BUSY_PCT for p in f["phases"].values())]
    if busy:
        lines.append(f"WARNING: a generator was above {GENERATOR_BUSY_PCT:g} % CPU in {', '.join(busy)}: its latency "
                     "includes the generator's own queueing")

    verdict = _verdict(runs, args)
    lines.append("")
    lines += verdict.pop("lines")
    return "\n".join(lines), verdict


def _row(target: str, f: dict) -> str:
    s = f["phases"]["steady"]
    headline = _headline(target)
    held = f"{f['held']}/{f['planned']}"
    return (f"{target:<9}{held:>13}{f['connect_s']:>8.1f}{s['msgs_per_s']:>9.0f}{s['delivered_pct']:>9.2f}"
            f"{s['p50_ms']:>8.1f}{s['p95_ms']:>8.1f}{s['p99_ms']:>8.1f}{s['max_ms']:>8.1f}"
            f"{s['cpu_pct'].get(headline, 0):>7.0f}{s['cpu_pct'].get('all', s['cpu_pct'].get(headline, 0)):>7.0f}"
            f"{f['kb_per_conn'].get(headline, 0):>7.1f}"
            f"{f['kb_per_conn'].get('all', f['kb_per_conn'].get(headline, 0)):>9.1f}"
            f"{_gen_cpu(s):>11}{s['generator_loop_lag_p99_ms']:>8.1f}")


def _ratio_row(f: dict, ceiling: dict) -> str:
    s, c = f["phases"]["steady"], ceiling["phases"]["steady"]
    headline, all_f = _headline_of(f), "all"
    c_cpu = c["cpu_pct"].get("server", 0)
    c_kb = ceiling["kb_per_conn"].get("server", 0)
    return (f"{'  ratio':<9}{_ratio(f['held'], ceiling['held']):>13}{_ratio(f['connect_s'], ceiling['connect_s']):>8}"
            f"{_ratio(s['msgs_per_s'], c['msgs_per_s']):>9}{'':>9}{_ratio(s['p50_ms'], c['p50_ms']):>8}"
            f"{_ratio(s['p95_ms'], c['p95_ms']):>8}{_ratio(s['p99_ms'], c['p99_ms']):>8}"
            f"{_ratio(s['max_ms'], c['max_ms']):>8}{_ratio(s['cpu_pct'].get(headline, 0), c_cpu):>7}"
            f"{_ratio(s['cpu_pct'].get(all_f, 0), c_cpu):>7}{_ratio(f['kb_per_conn'].get(headline, 0), c_kb):>7}"
            f"{_ratio(f['kb_per_conn'].get(all_f, 0), c_kb):>9}")


def _headline(target: str) -> str:
    return "server" if target == "ceiling" else target


def _headline_of(figures: dict) -> str:
    return next(group for group in figures["kb_per_conn"] if group not in ("all", "platform"))


def _gen_cpu(phase: dict) -> str:
    return "/".join(f"{c:.0f}" for c in phase["generator_cpu_pct"])


def _steady(runs: dict[str, dict], target: str, scenario: str) -> dict | None:
    figures = runs.get(target, {}).get("scenarios", {}).get(scenario)
    return figures if figures and "phases" in figures else None


def _peak(runs: dict[str, dict], target: str) -> dict | None:
    figures = _steady(runs, target, "room1000")
    return figures["phases"].get("peak") if figures else None


def _verdict(runs: dict[str, dict], args: argparse.Namespace) -> dict:
    """The edge's three targets; each is MET, NOT MET or NOT MEASURED (and then the run fails)."""
    lines = [f"edge targets ({args.duration:g}s windows):"]
    results = {}
    hold = _steady(runs, "edge", "hold")
    if hold:
        results["held"] = hold["held"] >= TARGET_HELD
        detail = f"{hold['held']} of {hold['planned']} open at the end of the hold scenario"
    else:
        detail = "hold scenario not measured"
    lines.append(f"  {TARGET_HELD:,} connections held: {_verdict_word(results.get('held'))} ({detail})")
    large = _steady(runs, "edge", "room1000")
    if large:
        s = large["phases"]["steady"]
        results["p99"] = s["p99_ms"] < TARGET_P99_MS and s["delivered_pct"] >= TARGET_DELIVERED * 100
        detail = (f"p99 {s['p99_ms']:.1f} ms, {s['delivered_pct']:.2f} % delivered, "
                  f"{large['phases']['steady']['msgs_per_s']:.0f} deliveries/s")
    else:
        detail = "room1000 not measured"
    lines.append(f"  p99 < {TARGET_P99_MS:g} ms in the 1,000-member room at {args.rate:g} msg/s, at least "
                 f"{TARGET_DELIVERED * 100:g} % delivered: {_verdict_word(results.get('p99'))} ({detail})")
    edge_peak, ceiling_peak = _peak(runs, "edge"), _peak(runs, "ceiling")
    if edge_peak and ceiling_peak and ceiling_peak["msgs_per_s"]:
        ratio = edge_peak["msgs_per_s"] / ceiling_peak["msgs_per_s"]
        results["throughput"] = ratio >= TARGET_PEAK_RATIO
        detail = (f"{edge_peak['msgs_per_s']:.0f} against {ceiling_peak['msgs_per_s']:.0f} deliveries/s, "
                  f"{ratio:.2f}x")
    else:
        detail = "the peak pass of edge and ceiling not both measured"
    lines.append(f"  peak deliveries at least {TARGET_PEAK_RATIO:.0%} of the ceiling's: "
                 f"{_verdict_word(results.get('throughput'))} ({detail})")
    results["all"] = len(results) == 3 and all(results.values())
    lines.append(f"edge targets: {'MET' if results['all'] else 'NOT MET'}")
    return {**results, "lines": lines}


def _smoke_problems(runs: dict[str, dict], scenarios: list[Scenario]) -> list[str]:
    """What keeps a smoke run from counting: a target or scenario that failed, a connection that did
    not join, a phase that delivered nothing (the failure mode that once went unseen)."""
    problems = []
    for target, run in runs.items():
        if "error" in run and not run.get("scenarios"):
            problems.append(f"{target}: {run['error']}")
            continue
        for scenario in scenarios:
            figures = run.get("scenarios", {}).get(scenario.name)
            if not figures or "error" in figures:
                problems.append(f"{target}/{scenario.name}: {(figures or {}).get('error', 'not run')}")
                continue
            if figures["connected"] < figures["planned"]:
                problems.append(f"{target}/{scenario.name}: {figures['connected']} of {figures['planned']} joined")
            for name, phase in figures["phases"].items():
                if phase["delivered"] == 0:
                    problems.append(f"{target}/{scenario.name}/{name}: nothing delivered")
    return problems


def _verdict_word(value: bool | None) -> str:
    return "NOT MEASURED" if value is None else "MET" if value else "NOT MET"


def _ratio(value: float, base: float) -> str:
    if not base:
        return "-"
    ratio = value / base
    return f"{ratio:.0f}x" if ratio >= 100 else f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def _pick(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


def _merge_counts(counts) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for key, value in count.items():
            merged[key] = merged.get(key, 0) + value
    return merged


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        _kill_generators()
        print("interrupted; generators and servers stopped, database dropped")
        sys.exit(130)
