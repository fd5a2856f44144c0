"""One WebSocket load-generator process of ``bench/realtime.py`` (which starts ``--procs`` of them).

    python -m bench.rtload   # driven over stdin/stdout by realtime.py, one JSON object a line

The driver writes the plan (URL, one token and room per connection), then commands; this process
answers each with one line:

- plan ``{"url", "connections": [[token, room], ...], "concurrency", "connect_timeout", "ping_interval",
  "deflate", "recv"}``: open every connection, at most ``concurrency`` handshakes (and joins) in flight,
  each ``join``-ed to its room; answer ``{"connected", "failed": {reason: n}, "connect_s"}``.
- ``{"cmd": "steady", "t0", "warmup", "duration", "drain", "senders": [[index, rate, phase], ...]}``:
  open loop: sender ``index`` sends ``chat`` at wall-clock times ``t0 + phase + i / rate`` until the
  end of the window; the window (whose figures count) is ``[t0 + warmup, t0 + warmup + duration)``.
- ``{"cmd": "peak", ..., "senders": [[index, max_rate], ...]}``: closed loop: each sender sends its
  next message when its previous one has come back to it (or after ``ECHO_TIMEOUT_S``), at most
  ``max_rate`` a second (the platform's per-connection limit).

  Both answer after ``drain`` more seconds: latencies (ms, float32, base64) of the chat messages sent
  in the window and received by any connection of this process, their count, what was sent in the
  window per room, members still open per room at the start, send lag and event-loop lag.
- ``{"cmd": "status"}``: connections open and closed (by close code); ``{"cmd": "stop"}``: exit.

Each chat text is ``vfb|<sender's time.time()>|<sender tag>|``; a receiver's latency is its own
``time.time()`` minus that (one host, one clock). The receive path is the cheap one (``recv`` mode
``fast``, the default): a ``ClientConnection`` subclass takes text frames in ``process_event``, as they
are parsed, and finds the marker with ``bytes.find``, so no task wakes per message and no JSON is
decoded; ``loop`` (``async for`` over the connection, ``str.find``) and ``json`` (``json.loads`` each
message) are there to measure what that saves. Clients do not offer permessage-deflate unless
``deflate`` is set (browsers do). Every connection sends ``{"type":"ping"}`` each ``ping_interval``
seconds (spread out), so that idle sockets outlive the platform's idle timeout.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import math
import sys
import time
from array import array
from collections import Counter, defaultdict

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import State

MARK = "vfb|"
MARK_B = MARK.encode()
JOIN_TIMEOUT_S = 60.0
ECHO_TIMEOUT_S = 5.0
LOOP_PROBE_S = 0.02
PING = '{"type":"ping"}'


class Window:
    """What the current phase counts; read by every receive path, so module-level and flat."""

    start = math.inf
    end = -math.inf
    latencies_ms = array("f")
    delivered = 0
    other = 0
    errors = 0
    error_samples: list[str] = []


class Conn:
    __slots__ = ("index", "token", "room", "ws", "tag", "echo", "failure")

    def __init__(self, index: int, token: str, room: str, tag: bytes) -> None:
        self.index = index
        self.token = token
        self.room = room
        self.ws: ClientConnection | None = None
        self.tag = tag  # this connection's sender tag, as it appears in its texts
        self.echo: asyncio.Future | None = None  # set while a closed-loop sender waits for its message
        self.failure: str | None = None


def on_text(conn: Conn, data: bytes | str) -> None:
    """One text message: a chat of ours (marker found) or anything else (counted, errors sampled)."""
    if isinstance(data, str):
        data = data.encode()
    i = data.find(MARK_B)
    if i < 0:
        Window.other += 1
        if b'"error"' in data:
            Window.errors += 1
            if len(Window.error_samples) < 5:
                Window.error_samples.append(data[:300].decode(errors="replace"))
        return
    now = time.time()
    j = data.find(b"|", i + 4)
    sent = float(data[i + 4:j])
    if Window.start <= sent < Window.end:
        Window.latencies_ms.append((now - sent) * 1000.0)
        Window.delivered += 1
    echo = conn.echo
    if echo is not None and data[j + 1:data.find(b"|", j + 1)] == conn.tag and not echo.done():
        echo.set_result(None)


def on_json(conn: Conn, text: str) -> None:
    """The ``json`` receive mode: decode every message as a careful client would."""
    message = json.loads(text)
    kind = message.get("type")
    if kind != "chat" or not str(message.get("text", "")).startswith(MARK):
        Window.other += 1
        if kind == "error":
            Window.errors += 1
            if len(Window.error_samples) < 5:
                Window.error_samples.append(text[:300])
        return
    now = time.time()
    _, sent, tag, _ = message["text"].split("|")
    if Window.start <= float(sent) < Window.end:
        Window.latencies_ms.append((now - float(sent)) * 1000.0)
        Window.delivered += 1
    echo = conn.echo
    if echo is not None and tag.encode() == conn.tag and not echo.done():
        echo.set_result(None)


class FastConnection(ClientConnection):
    """Takes whole text frames as they are parsed, once ``vf`` is set (after ``joined``)."""

    vf: Conn | None = None

    def process_event(self, event) -> None:
        if self.vf is not None and isinstance(event, Frame) and event.opcode is Opcode.TEXT and event.fin:
            on_text(self.vf, event.data)
        else:
            super().process_event(event)


class Generator:
    def __init__(self, plan: dict) -> None:
        self.url = plan["url"]
        self.concurrency = int(plan["concurrency"])
        self.connect_timeout = float(plan["connect_timeout"])
        self.ping_interval = float(plan["ping_interval"])
        self.deflate = bool(plan.get("deflate"))
        self.recv = plan.get("recv", "fast")
        self.conns = [Conn(i, token, room, f"{plan['name']}-{i}".encode())
                      for i, (token, room) in enumerate(plan["connections"])]
        self.readers: list[asyncio.Task] = []

    async def open_all(self) -> dict:
        started = time.monotonic()
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(conn: Conn) -> None:
            async with semaphore:
                await self._open(conn)

        tasks = [asyncio.create_task(one(conn)) for conn in self.conns]
        done, pending = await asyncio.wait(tasks, timeout=self.connect_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for conn in self.conns:
            if conn.ws is None and conn.failure is None:
                conn.failure = "connect phase timed out"
        failed = Counter(conn.failure for conn in self.conns if conn.failure)
        gc.collect()
        gc.freeze()  # the connections live to the end: later collections need not walk them
        return {"connected": sum(1 for c in self.conns if c.ws is not None), "failed": dict(failed),
                "connect_s": time.monotonic() - started}

    async def _open(self, conn: Conn) -> None:
        ws = None
        try:
            ws = await connect(
                f"{self.url}?token={conn.token}", compression="deflate" if self.deflate else None,
                ping_interval=None, close_timeout=2, max_size=2**24, max_queue=None,
                open_timeout=JOIN_TIMEOUT_S, user_agent_header=None,
                create_connection=FastConnection if self.recv == "fast" else ClientConnection,
            )
            await ws.send(json.dumps({"type": "join", "room": conn.room}))
            async with asyncio.timeout(JOIN_TIMEOUT_S):
                while True:
                    message = await ws.recv()
                    if '"joined"' in message or '"error"' in message:
                        decoded = json.loads(message)
                        if decoded.get("type") == "joined":
                            break
                        if decoded.get("type") == "error":
                            raise RuntimeError(f"join refused: {decoded.get('code')}")
        except ConnectionClosed as exc:
            conn.failure = f"closed {exc.rcvd.code if exc.rcvd else 1006}"
        except InvalidStatus as exc:
            conn.failure = f"HTTP {exc.response.status_code}"
        except TimeoutError:
            conn.failure = "timeout"
        except OSError as exc:
            conn.failure = f"{type(exc).__name__} {exc.errno}"
        except RuntimeError as exc:
            conn.failure = str(exc)
        except Exception as exc:  # noqa: BLE001 - counted by kind, the other connections go on
            conn.failure = type(exc).__name__
        if conn.failure:
            if ws is not None:
                ws.transport.abort()
            return
        conn.ws = ws
        if self.recv == "fast":
            ws.vf = conn
        else:
            self.readers.append(asyncio.create_task(self._reader(conn)))

    async def _reader(self, conn: Conn) -> None:
        handle = on_json if self.recv == "json" else on_text
        try:
            async for message in conn.ws:
                handle(conn, message)
        except ConnectionClosed:
            pass

    async def pinger(self) -> None:
        """Each connection pings once per interval; the pings of a 100 ms step go out together."""
        step = 0.1
        per_step = max(1, math.ceil(len(self.conns) * step / self.ping_interval))
        position = 0
        while True:
            await asyncio.sleep(step)
            for _ in range(per_step):
                conn = self.conns[position % len(self.conns)]
                position += 1
                if conn.ws is not None and conn.ws.state is State.OPEN:
                    try:
                        await conn.ws.send(PING)
                    except ConnectionClosed:
                        pass

    def status(self) -> dict:
        closed = Counter(str(c.ws.close_code) for c in self.conns if c.ws is not None and c.ws.state is not State.OPEN)
        return {"open": sum(1 for c in self.conns if c.ws is not None and c.ws.state is State.OPEN),
                "closed": dict(closed)}

    async def phase(self, command: dict) -> dict:
        t0 = float(command["t0"])
        start = t0 + float(command["warmup"])
        end = start + float(command["duration"])
        members: dict[str, int] = defaultdict(int)
        for conn in self.conns:
            if conn.ws is not None and conn.ws.state is State.OPEN:
                members[conn.room] += 1
        Window.start, Window.end = start, end
        Window.latencies_ms = array("f")
        Window.delivered = Window.other = Window.errors = 0
        Window.error_samples = []
        sent: dict[str, int] = defaultdict(int)
        lags: list[float] = []
        send_errors = Counter()
        echo_timeouts = [0]
        loop_lags: list[float] = []

        async def open_loop(conn: Conn, rate: float, phase: float) -> None:
            i = 0
            while (due := t0 + phase + i / rate) < end:
                if (wait := due - time.time()) > 0:
                    await asyncio.sleep(wait)
                if not await send(conn, due):
                    return
                i += 1

        async def closed_loop(conn: Conn, max_rate: float) -> None:
            loop = asyncio.get_running_loop()
            last = -math.inf
            while True:
                if (wait := last + 1.0 / max_rate - time.time()) > 0:
                    await asyncio.sleep(wait)
                if time.time() >= end:
                    return
                conn.echo = loop.create_future()
                last = time.time()
                if not await send(conn, last):
                    return
                try:
                    await asyncio.wait_for(conn.echo, ECHO_TIMEOUT_S)
                except TimeoutError:
                    echo_timeouts[0] += 1
                conn.echo = None

        async def send(conn: Conn, due: float) -> bool:
            now = time.time()
            text = f"{MARK}{now:.6f}|{conn.tag.decode()}|"
            try:
                await conn.ws.send(f'{{"type":"chat","room":{json.dumps(conn.room)},"text":"{text}"}}')
            except ConnectionClosed as exc:
                send_errors[f"closed {exc.rcvd.code if exc.rcvd else 1006}"] += 1
                return False
            if start <= now < end:
                sent[conn.room] += 1
                lags.append(now - due)
            return True

        async def probe() -> None:
            while time.time() < end:
                before = time.perf_counter()
                await asyncio.sleep(LOOP_PROBE_S)
                if time.time() >= start:
                    loop_lags.append(time.perf_counter() - before - LOOP_PROBE_S)

        gc.disable()  # a collection inside the window would show as latency; the window is short
        senders = []
        for spec in command["senders"]:
            conn = self.conns[int(spec[0])]
            if conn.ws is None:
                continue
            if command["cmd"] == "steady":
                senders.append(open_loop(conn, float(spec[1]), float(spec[2])))
            else:
                senders.append(closed_loop(conn, float(spec[1])))
        await asyncio.gather(probe(), *senders)
        if (wait := end + float(command["drain"]) - time.time()) > 0:
            await asyncio.sleep(wait)
        Window.start, Window.end = math.inf, -math.inf
        gc.enable()
        lags.sort()
        loop_lags.sort()
        return {
            "latencies_ms": base64.b64encode(Window.latencies_ms.tobytes()).decode(),
            "delivered": Window.delivered, "other": Window.other, "errors": Window.errors,
            "error_samples": Window.error_samples, "sent": dict(sent), "members": dict(members),
            "send_errors": dict(send_errors), "echo_timeouts": echo_timeouts[0],
            "send_lag_ms": {"p50": _pick(lags, 0.5) * 1000, "p99": _pick(lags, 0.99) * 1000,
                            "max": (lags[-1] if lags else 0.0) * 1000},
            "loop_lag_ms": {"p50": _pick(loop_lags, 0.5) * 1000, "p99": _pick(loop_lags, 0.99) * 1000,
                            "max": (loop_lags[-1] if loop_lags else 0.0) * 1000},
            **self.status(),
        }


def _pick(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


def _answer(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def main() -> None:
    plan = json.loads(await asyncio.to_thread(sys.stdin.readline))
    generator = Generator(plan)
    pinger = asyncio.create_task(generator.pinger())
    _answer(await generator.open_all())
    while line := await asyncio.to_thread(sys.stdin.readline):
        command = json.loads(line)
        if command["cmd"] in ("steady", "peak"):
            _answer(await generator.phase(command))
        elif command["cmd"] == "status":
            _answer(generator.status())
        elif command["cmd"] == "stop":
            break
    pinger.cancel()
    # No closing handshakes: exiting closes the sockets, the server sees them go as it would a crash.


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
