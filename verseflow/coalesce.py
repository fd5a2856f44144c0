"""Lookups made in one event-loop turn, answered by one bulk call.

Under a burst (10,000 sockets reconnecting after an edge restart) every socket asks Redis the same
kind of question within milliseconds of the others; one round trip per question costs more client
CPU (command packing, pool checkout, parsing) than the question itself. A :class:`Coalescer`
collects the keys asked for and answers all of them with one call of ``bulk``. A lone lookup
waits for nothing (it leaves at the end of the event-loop turn it was made in); while
``max_in_flight`` bulk calls are under way, new keys wait for the next one, so under load the
batches grow instead of the number of round trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    def __init__(self, bulk: Callable[[Sequence[K]], Awaitable[Sequence[V]]], *, max_batch: int = 1000,
                 max_in_flight: int = 1) -> None:
        self._bulk = bulk
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._scheduled = False
        self._pending: list[tuple[K, asyncio.Future[V]]] = []

    def get(self, key: K) -> asyncio.Future[V]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        self._pending.append((key, future))
        self._schedule()
        return future

    def _schedule(self) -> None:
        if self._pending and not self._scheduled and self._in_flight < self._max_in_flight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._pending and self._in_flight < self._max_in_flight:
            batch, self._pending = self._pending[:self._max_batch], self._pending[self._max_batch:]
            self._in_flight += 1
            loop.create_task(self._answer(batch))

    async def _answer(self, batch: list[tuple[K, asyncio.Future[V]]]) -> None:
        try:
            values = await self._bulk([key for key, _ in batch])
        except Exception as exc:  # noqa: BLE001 - each asker gets the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        else:
            for (_, future), value in zip(batch, values, strict=True):
                if not future.done():
                    future.set_result(value)
        finally:
            self._in_flight -= 1
            self._schedule()
