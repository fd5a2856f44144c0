"""The load of ``bench/autoscale.py``: API reads, WebSocket sessions and uploads that follow a level.

A :class:`Ramp` maps elapsed seconds to a level between 0 and 1; each driver offers its peak times
that level, in one asyncio loop of this process:

- API: catalog reads and searches (``workload.request_mix``), open loop: every 10 ms tick sends the
  calls the rate owes since the last tick, each timed from the tick (no coordinated omission).
- WebSocket sessions on ``WS /v1/ws``: the number open follows ``level x peak``. A session connects,
  joins its room, chats every ``chat_every_s`` and waits for its own message to come back through the
  room (the latency recorded), then closes normally after its lifetime (``session_s``, +-50 %): users
  come and go, each socket holding one of the gateway's ongoing requests for its life.
- Uploads: multipart ``POST /v1/tracks`` of a small WAV at ``level x peak`` per second.

Every call, connect, chat and upload becomes a :class:`Sample` (kind, start, latency, error), bucketed
by its start by the report.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import aiohttp
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench import loadgen

TICK_S = 0.01
CONNECT_TIMEOUT_S = 30.0
ECHO_TIMEOUT_S = 10.0
UPLOAD_TIMEOUT_S = 60.0
CONNECTS_IN_FLIGHT = 20  # handshakes at once: a burst of sockets queues here, not in the proxy


@dataclass(frozen=True)
class Ramp:
    """Base level, then up to 1, held, down to the base and held there until the run stops."""

    idle_s: float
    up_s: float
    hold_s: float
    down_s: float
    base: float = 0.1

    @property
    def load_end_s(self) -> float:
        """When the level is back at the base."""
        return self.idle_s + self.up_s + self.hold_s + self.down_s

    def level(self, t: float) -> float:
        if t < self.idle_s:
            return self.base
        if (t := t - self.idle_s) < self.up_s:
            return self.base + (1 - self.base) * t / self.up_s
        if (t := t - self.up_s) < self.hold_s:
            return 1.0
        if (t := t - self.hold_s) < self.down_s:
            return 1.0 - (1 - self.base) * t / self.down_s
        return self.base


@dataclass(frozen=True)
class Peak:
    api_rate: float  # requests/s
    sessions: int  # open at once
    uploads_per_s: float
    session_s: float = 8.0
    chat_every_s: float = 2.0


@dataclass(frozen=True)
class Sample:
    kind: str  # "api", "ws connect", "ws chat", "upload"
    start: float  # seconds since the ramp started
    latency_s: float
    error: str | None


@dataclass
class Targets:
    """Where the load goes and who sends it."""

    base_url: str
    ws_url: str
    calls: list[loadgen.Call]
    tokens: list[str]  # of registered users, one per session in turn
    rooms: list[str]
    upload_token: str
    artist_id: str
    upload: bytes


@dataclass
class Run:
    """The load in progress: its clock, its samples and what is open."""

    ramp: Ramp
    peak: Peak
    t0: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    sessions_open: int = 0  # started and not yet ended (connecting ones included)
    sessions_joined: list[tuple[float, int]] = field(default_factory=list)  # (time, sockets joined) samples
    joined: int = 0
    stopping: bool = False

    def now(self) -> float:
        return time.monotonic() - self.t0

    def level(self) -> float:
        return self.ramp.level(self.now())

    def record(self, kind: str, start: float, error: str | None = None) -> None:
        self.samples.append(Sample(kind, start, self.now() - start, error))


async def drive(run: Run, targets: Targets, until: Callable[[float], bool]) -> None:
    """Offer the load until ``until(elapsed)`` says stop; then let open sessions and calls finish."""
    async with aiohttp.ClientSession(targets.base_url, connector=aiohttp.TCPConnector(limit=256),
                                     timeout=aiohttp.ClientTimeout(total=loadgen.TIMEOUT_S)) as http:
        in_flight: set[asyncio.Task] = set()
        drivers = [_api(run, http, targets, in_flight), _sessions(run, targets, in_flight),
                   _uploads(run, http, targets, in_flight)]
        tasks = [asyncio.create_task(d) for d in drivers]
        while not until(run.now()):  # noqa: ASYNC110 - polls a condition of the clock and a log file
            await asyncio.sleep(0.2)
        run.stopping = True
        await asyncio.gather(*tasks)
        await asyncio.gather(*in_flight, return_exceptions=True)


def _spawn(in_flight: set[asyncio.Task], job) -> None:  # noqa: ANN001 - a coroutine
    task = asyncio.create_task(job)
    in_flight.add(task)
    task.add_done_callback(in_flight.discard)


async def _api(run: Run, http: aiohttp.ClientSession, targets: Targets, in_flight: set[asyncio.Task]) -> None:
    calls = itertools.cycle(targets.calls)
    owed, last = 0.0, run.now()
    loop = asyncio.get_running_loop()
    while not run.stopping:
        await asyncio.sleep(TICK_S)
        now = run.now()
        owed += run.peak.api_rate * run.level() * (now - last)
        last = now
        while owed >= 1:
            owed -= 1
            _spawn(in_flight, _api_call(run, http, next(calls), loop.time(), now))


async def _api_call(run: Run, http: aiohttp.ClientSession, call: loadgen.Call, due: float, start: float) -> None:
    outcome = await loadgen.send(http, call, due)
    run.samples.append(Sample("api", start, outcome.latency_s, outcome.error))


async def _uploads(run: Run, http: aiohttp.ClientSession, targets: Targets, in_flight: set[asyncio.Task]) -> None:
    owed, last = 0.0, run.now()
    while not run.stopping:
        await asyncio.sleep(0.1)
        now = run.now()
        owed += run.peak.uploads_per_s * run.level() * (now - last)
        last = now
        while owed >= 1:
            owed -= 1
            _spawn(in_flight, _upload(run, http, targets))


async def _upload(run: Run, http: aiohttp.ClientSession, targets: Targets) -> None:
    start = run.now()
    form = aiohttp.FormData()
    form.add_field("title", "Autoscale bench")
    form.add_field("artist_id", targets.artist_id)
    form.add_field("file", targets.upload, filename="tone.wav", content_type="audio/wav")
    error = None
    try:
        async with http.post("/v1/tracks", data=form, headers={"Authorization": f"Bearer {targets.upload_token}"},
                             timeout=aiohttp.ClientTimeout(total=UPLOAD_TIMEOUT_S)) as response:
            await response.read()
            if response.status != 202:
                error = f"HTTP {response.status}"
    except (TimeoutError, aiohttp.ClientError) as exc:
        error = type(exc).__name__
    run.record("upload", start, error)


async def _sessions(run: Run, targets: Targets, in_flight: set[asyncio.Task]) -> None:
    """Keep ``level x peak`` sessions open: start one whenever fewer are (they end on their own)."""
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    identities = _identities(targets)
    rng = random.Random(7)
    while not run.stopping:
        wanted = round(run.peak.sessions * run.level())
        while run.sessions_open < wanted:
            run.sessions_open += 1
            life = run.peak.session_s * rng.uniform(0.5, 1.5)
            _spawn(in_flight, _session(run, targets.ws_url, *next(identities), life, gate))
        run.sessions_joined.append((run.now(), run.joined))
        await asyncio.sleep(0.1)


def _identities(targets: Targets) -> Iterator[tuple[str, str]]:
    """(token, room) for each new session, users and rooms in turn."""
    for i in itertools.count():
        yield targets.tokens[i % len(targets.tokens)], targets.rooms[i % len(targets.rooms)]


class JoinRefused(Exception):
    pass


async def _session(run: Run, url: str, token: str, room: str, life_s: float, gate: asyncio.Semaphore) -> None:
    """One user's socket from handshake to normal close; a failure is recorded once, as the step it
    broke (``ws connect`` until joined, ``ws chat`` after)."""
    start, kind = run.now(), "ws connect"
    try:
        async with gate:
            ws = await connect(f"{url}?token={token}", open_timeout=CONNECT_TIMEOUT_S, compression=None,
                               close_timeout=5, max_queue=None, ping_interval=None)
        async with ws:
            await join(ws, room)
            run.record(kind, start)
            kind = "ws chat"
            run.joined += 1
            try:
                await _chat(run, ws, room, start + life_s)
            finally:
                run.joined -= 1
    except ConnectionClosed as exc:
        run.record(kind, start, f"closed {exc.rcvd.code if exc.rcvd else 1006}")
    except InvalidStatus as exc:
        run.record(kind, start, f"HTTP {exc.response.status_code}")
    except (OSError, TimeoutError, JoinRefused) as exc:
        run.record(kind, start, type(exc).__name__)
    finally:
        run.sessions_open -= 1


async def join(ws, room: str) -> None:  # noqa: ANN001 - a websockets connection
    await ws.send(json.dumps({"type": "join", "room": room}))
    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == "joined":
                return
            if message.get("type") == "error":
                raise JoinRefused(message.get("code"))


async def _chat(run: Run, ws, room: str, end: float) -> None:  # noqa: ANN001 - a websockets connection
    """Chat every ``chat_every_s`` until ``end``; each message's latency is until it comes back.

    A dropped socket is an error once (the session is over), not one per missed chat."""
    pending: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    counter = itertools.count()
    next_chat = run.now()
    while run.now() < end and not run.stopping:
        if run.now() >= next_chat:
            tag = f"ab|{id(ws)}|{next(counter)}|"
            pending[tag] = run.now()
            await ws.send(json.dumps({"type": "chat", "room": room, "text": tag}))
            next_chat += run.peak.chat_every_s
        try:
            message = await asyncio.wait_for(ws.recv(), timeout=max(0.01, min(next_chat, end) - run.now()))
        except TimeoutError:
            message = ""
        for tag, sent in list(pending.items()):
            if tag in message:
                del pending[tag]
                run.record("ws chat", sent)
            elif run.now() - sent > ECHO_TIMEOUT_S:
                del pending[tag]
                run.record("ws chat", sent, "echo timeout")
    deadline = loop.time() + ECHO_TIMEOUT_S
    while pending and loop.time() < deadline:  # the last messages' echoes
        try:
            message = await asyncio.wait_for(ws.recv(), timeout=deadline - loop.time())
        except TimeoutError:
            break
        for tag in [t for t in pending if t in message]:
            run.record("ws chat", pending.pop(tag))
    for sent in pending.values():
        run.record("ws chat", sent, "echo timeout")
