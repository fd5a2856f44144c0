"""User sessions as virtual actors: which gateways hold a user's sockets, and notifications to them.

``SessionHostCore`` runs inside a ``SessionHost`` Ray actor. A user's virtual session exists while
at least one of their devices is connected; ``notify`` reaches every device, anywhere, with one
delivery per gateway. The state is rebuilt by the gateways themselves after a host restart (they
re-register their sockets when they resubscribe), so nothing here needs persisting.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from rooms import metrics
from rooms.fanout import Delivery, Outboxes
from rooms.model import Endpoint
from rooms.protocol import dumps, now_ms


class SessionHostCore:
    def __init__(self) -> None:
        self._sessions: dict[uuid.UUID, set[Endpoint]] = {}
        self.outboxes = Outboxes(limit=100_000, on_lost=self._gateway_lost)

    def subscribe(self, gateway: str) -> AsyncIterator[list[Delivery]]:
        return self.outboxes.subscribe(gateway)

    def connect(self, endpoint: Endpoint, user_id: uuid.UUID) -> int:
        """Register a device; returns how many the user now has online."""
        devices = self._sessions.get(user_id)
        if devices is None:
            devices = self._sessions[user_id] = set()
            metrics.ACTIVATIONS.inc(kind="session")
        devices.add(endpoint)
        return len(devices)

    def disconnect(self, endpoint: Endpoint, user_id: uuid.UUID) -> None:
        devices = self._sessions.get(user_id)
        if devices is not None:
            devices.discard(endpoint)
            if not devices:
                del self._sessions[user_id]  # passivated: nothing left to remember

    def notify(self, user_id: uuid.UUID, event: str, data: dict[str, Any]) -> int:
        """Push ``{"type": "notify", "event", "data", "ts"}`` to every device; returns devices reached."""
        devices = self._sessions.get(user_id, set())
        payload = dumps({"type": "notify", "event": event, "data": data, "ts": now_ms()})
        for gateway in {e.gateway for e in devices}:
            self.outboxes.put(gateway, ("user", str(user_id), payload, 0, None))
        return len(devices)

    def devices(self, user_id: uuid.UUID) -> int:
        return len(self._sessions.get(user_id, ()))

    def stats(self) -> dict[str, int]:
        return {"users": len(self._sessions), "sockets": sum(len(d) for d in self._sessions.values())}

    def _gateway_lost(self, gateway: str) -> None:
        for user_id in list(self._sessions):
            self._sessions[user_id] = {e for e in self._sessions[user_id] if e.gateway != gateway}
            if not self._sessions[user_id]:
                del self._sessions[user_id]
