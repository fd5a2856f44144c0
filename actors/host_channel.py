"""Gateway → host calls: sent in batches over Ray, answered on the host's stream.

A Ray actor call costs the caller about a millisecond of CPU (task spec, serialization, gRPC,
threads handing the GIL back and forth) and the callee as much again, whatever it carries. A
reconnect storm makes each socket call its session host and its room host (and again when it
leaves): 10,000 sockets were 20,000+ calls, and the edge spent its time making calls instead of
accepting sockets.

So a gateway keeps one :class:`HostChannel` per host. A call is queued; the channel sends what is
queued as one ``submit`` Ray call, with at most ``max_in_flight`` submits outstanding: a lone call
leaves at the end of the event-loop turn in which it was made, and under load calls accumulate
while the previous submit travels, so the batch grows instead of the number of calls (the same
adaptive batching as the room log's group commit). ``submit`` returns as soon as the host has
started the calls; each result comes back as a ``("reply", call_id, (ok, value), 0, None)``
delivery on the stream the host already keeps to this gateway, as soon as that call finishes. So
a slow call (a join waiting for its room's log write) delays nobody else's answer, and a reply
travels the same FIFO as the deliveries its call caused (``joined`` before the join returns).

If the stream breaks (the host died, or cut this gateway), every call waiting for a reply fails
with the stream's error; the gateway then resubscribes and resyncs as before.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from ray.actor import ActorHandle

from rooms.fanout import Delivery, Outboxes
from verseflow.errors import DomainError

#: Host methods a submit may name (a submit must not reach anything else on the actor).
CALLABLE = frozenset({"join", "leave", "chat", "set_transport", "doc_open", "doc_frame", "doc_close",
                      "connect", "disconnect"})
REPLY = "reply"


class HostFailure(DomainError):
    """A host call failed in a way the client can only retry (an unexpected error in the host)."""

    status, title = 503, "Host call failed"


class HostChannel:
    """The calls from this gateway to one host."""

    def __init__(self, host: Callable[[], ActorHandle], gateway: str, *, max_in_flight: int = 2,
                 max_batch: int = 512) -> None:
        self._host = host
        self._gateway = gateway
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._ids = itertools.count(1)
        self._queued: list[tuple[int, str, tuple[Any, ...]]] = []
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._in_flight = 0
        self._flush_scheduled = False
        self.submits = 0
        self.calls = 0

    def call(self, method: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Queue ``host.method(*args)``; the future resolves to its result or raises its exception."""
        loop = asyncio.get_running_loop()
        call_id = next(self._ids)
        future = self._waiting[call_id] = loop.create_future()
        self._queued.append((call_id, method, args))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def resolve(self, replies: Iterable[Delivery]) -> None:
        """Hand the stream's replies to their callers."""
        for _, call_id, (ok, value), _, _ in replies:
            future = self._waiting.pop(call_id, None)
            if future is None or future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def fail_all(self, exc: BaseException) -> None:
        """The stream broke: no reply will come for anything sent or queued."""
        waiting, self._waiting = self._waiting, {}
        self._queued.clear()
        for future in waiting.values():
            if not future.done():
                future.set_exception(exc)

    def stats(self) -> dict[str, int]:
        return {"submits": self.submits, "calls": self.calls, "waiting": len(self._waiting)}

    def _flush(self) -> None:
        self._flush_scheduled = False
        loop = asyncio.get_running_loop()
        while self._queued and self._in_flight < self._max_in_flight:
            batch, self._queued = self._queued[:self._max_batch], self._queued[self._max_batch:]
            self._in_flight += 1
            loop.create_task(self._submit(batch))

    async def _submit(self, batch: list[tuple[int, str, tuple[Any, ...]]]) -> None:
        self.submits += 1
        self.calls += len(batch)
        try:
            await self._host().submit.remote(self._gateway, batch)
        except Exception as exc:  # noqa: BLE001 - not started: every caller in the batch learns why
            for call_id, _, _ in batch:
                future = self._waiting.pop(call_id, None)
                if future is not None and not future.done():
                    future.set_exception(exc)
        finally:
            self._in_flight -= 1
            if self._queued and not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)


def start_calls(target: object, outboxes: Outboxes, gateway: str,
                calls: list[tuple[int, str, tuple[Any, ...]]]) -> None:
    """The host side of ``submit``: start each call; its reply goes onto ``gateway``'s stream."""
    loop = asyncio.get_running_loop()
    for call_id, method, args in calls:
        loop.create_task(_run_one(target, outboxes, gateway, call_id, method, args))


async def _run_one(target: object, outboxes: Outboxes, gateway: str, call_id: int, method: str,
                   args: tuple[Any, ...]) -> None:
    try:
        if method not in CALLABLE:
            raise HostFailure(f"{method} cannot be called through a channel")
        outcome: tuple[bool, Any] = (True, await getattr(target, method)(*args))
    except DomainError as exc:
        outcome = (False, exc)
    except Exception as exc:  # noqa: BLE001 - any other error must still answer its caller, picklably
        outcome = (False, HostFailure(f"{type(exc).__name__}: {exc}"[:300]))
    outboxes.put(gateway, (REPLY, call_id, outcome, 0, None))
