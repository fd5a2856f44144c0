"""Per-gateway outboxes: how a host sends each message once per gateway, in order.

A gateway (a Serve replica or an edge) subscribes to every host with one long-lived stream. The
host appends deliveries to that gateway's outbox; the stream drains it in batches. One stream per
(host, gateway) pair keeps ordering simple: a ``joined`` reply, its backlog and the live messages
after it travel the same FIFO, so a client never sees seq 7 before the ``joined`` that says 6.

A delivery is a 5-tuple ``(kind, key, data, seq, extra)`` (tuples pickle cheaply through Ray):

- ``("room", room_id, json, seq, None)``: to every local socket joined to the room; seq 0 = unsequenced
- ``("conn", conn_id, json_or_bytes, seq, room_id)``: to one socket (replies, backlog)
- ``("doc", room_id, frame, 0, exclude_conn_id)``: a Yjs frame to the room's document sockets but one
- ``("drop", conn_id, None, 0, room_id)``: the socket is no longer in the room (kicked)
- ``("user", user_id, json, 0, None)``: to every local socket of the user (notifications)

An outbox that grows past its bound (a gateway that stopped reading) is cut: its stream ends, the
host forgets the gateway's members, and the gateway resubscribes and rejoins with ``since`` — the
same path as a host restart, so there is one recovery mechanism to get right.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from verseflow.errors import DomainError

Delivery = tuple[str, str, Any, int, Any]


class GatewayUnknown(DomainError):
    """The host has no stream from this gateway (it restarted): resubscribe, then retry."""

    status, title = 503, "Resubscribe"


class OutboxOverflow(Exception):
    """The gateway fell too far behind; it must resubscribe and resync."""


class _Outbox:
    __slots__ = ("items", "ready", "broken")

    def __init__(self) -> None:
        self.items: list[Delivery] = []
        self.ready = asyncio.Event()
        self.broken = False


class Outboxes:
    """The outboxes of one host, keyed by gateway id."""

    def __init__(self, limit: int, on_lost: Callable[[str], None]) -> None:
        self._limit = limit
        self._on_lost = on_lost
        self._boxes: dict[str, _Outbox] = {}

    def has(self, gateway: str) -> bool:
        box = self._boxes.get(gateway)
        return box is not None and not box.broken

    def require(self, gateway: str) -> None:
        """Calls whose answers travel on a gateway's stream need that stream to exist."""
        if not self.has(gateway):
            raise GatewayUnknown(f"no stream from gateway {gateway}")

    def gateways(self) -> list[str]:
        return list(self._boxes)

    def put(self, gateway: str, delivery: Delivery) -> None:
        box = self._boxes.get(gateway)
        if box is None or box.broken:
            return
        box.items.append(delivery)
        if len(box.items) > self._limit:
            box.broken = True
        box.ready.set()

    async def subscribe(self, gateway: str) -> AsyncIterator[list[Delivery]]:
        """Batches for ``gateway``; the first is empty and means "subscribed". Replaces an older stream."""
        previous = self._boxes.get(gateway)
        if previous is not None:
            previous.broken = True
            previous.ready.set()
        box = self._boxes[gateway] = _Outbox()
        try:
            yield []
            while True:
                await box.ready.wait()
                box.ready.clear()
                if box.broken:
                    raise OutboxOverflow(f"gateway {gateway} fell more than {self._limit} deliveries behind")
                batch, box.items = box.items, []
                yield batch
        finally:
            if self._boxes.get(gateway) is box:
                del self._boxes[gateway]
                self._on_lost(gateway)
