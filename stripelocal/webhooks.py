"""Webhook deliveries signed as Stripe signs them, with switches to misbehave on purpose.

Signature: ``Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``, the
scheme ``stripe.Webhook.construct_event`` verifies (https://docs.stripe.com/webhooks#verify-manually).
The body is the event's JSON as Stripe sends it (pretty-printed, two-space indent).

Switches (``configure``), for testing a receiver against what Stripe really does:
- ``duplicates``: deliver every event this many times (Stripe may deliver an event more than once);
- ``reorder``: deliver each batch of queued events newest first (Stripe does not guarantee order);
- ``delay_s``: wait this long before each delivery;
- ``hold``: queue deliveries until ``release()`` (a test decides exactly when they arrive).
A non-2xx answer or a connection error is retried with back-off (``retry_delays_s``), as Stripe
retries for up to three days in live mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx

from stripelocal.engine import new_id


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``payload``."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


class Deliverer:
    """A queue of (event, endpoint) deliveries worked by one task on the server's event loop."""

    def __init__(self, *, retry_delays_s: tuple[float, ...] = (0.5, 1, 2, 4, 8), timeout_s: float = 10.0) -> None:
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.retry_delays_s = retry_delays_s
        self.timeout_s = timeout_s
        self.duplicates = 1
        self.reorder = False
        self.delay_s = 0.0
        self.hold = False
        self.log: list[dict[str, Any]] = []
        self._pending: list[tuple[dict[str, Any], str]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()

    def add_endpoint(self, url: str, enabled_events: list[str], *, secret: str | None = None,
                     metadata: Any = None) -> dict[str, Any]:
        endpoint = {"id": new_id("we"), "object": "webhook_endpoint", "api_version": None, "application": None,
                    "created": int(time.time()), "description": None, "enabled_events": enabled_events,
                    "livemode": False, "metadata": metadata if isinstance(metadata, dict) else {},
                    "secret": secret or "whsec_" + secrets.token_urlsafe(24), "status": "enabled", "url": url}
        self.endpoints[endpoint["id"]] = endpoint
        return endpoint

    def remove_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        self.endpoints.pop(endpoint_id, None)
        return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}

    def configure(self, *, duplicates: int | None = None, reorder: bool | None = None, delay_s: float | None = None,
                  hold: bool | None = None) -> None:
        if duplicates is not None:
            self.duplicates = max(1, int(duplicates))
        if reorder is not None:
            self.reorder = bool(reorder)
        if delay_s is not None:
            self.delay_s = max(0.0, float(delay_s))
        if hold is not None:
            self.hold = bool(hold)
            if not self.hold:
                self.release()

    def switches(self) -> dict[str, Any]:
        return {"duplicates": self.duplicates, "reorder": self.reorder, "delay_s": self.delay_s, "hold": self.hold,
                "pending": len(self._pending), "endpoints": [e["url"] for e in self.endpoints.values()]}

    def enqueue(self, event: dict[str, Any]) -> None:
        """Called by the engine for every event; takes a snapshot so later changes do not leak in."""
        payload = json.dumps(event, indent=2)
        for endpoint in self.endpoints.values():
            if "*" in endpoint["enabled_events"] or event["type"] in endpoint["enabled_events"]:
                event["pending_webhooks"] += 1
                for _ in range(self.duplicates):
                    self._pending.append(({"id": event["id"], "type": event["type"], "payload": payload},
                                          endpoint["id"]))
        if not self.hold and self._wake is not None:
            self._wake.set()

    def release(self) -> None:
        """Deliver everything held (in reverse order when ``reorder`` is on)."""
        self.hold = False
        if self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=self.timeout_s)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        for task in (self._task, *self._retries):
            if task is not None:
                task.cancel()
        await self._client.aclose()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.hold or not self._pending:
                continue
            batch, self._pending = self._pending, []
            if self.reorder:
                batch.reverse()
            for item, endpoint_id in batch:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                await self._deliver(item, endpoint_id, attempt=1)

    async def _deliver(self, item: dict[str, Any], endpoint_id: str, *, attempt: int) -> None:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            return
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                   "Stripe-Signature": sign(item["payload"], endpoint["secret"])}
        record = {"event": item["id"], "type": item["type"], "endpoint": endpoint["url"], "attempt": attempt,
                  "status": None, "error": None, "at": time.time()}
        try:
            response = await self._client.post(endpoint["url"], content=item["payload"].encode(), headers=headers)
            record["status"] = response.status_code
            ok = 200 <= response.status_code < 300
        except httpx.HTTPError as error:
            record["error"] = f"{type(error).__name__}: {error}"
            ok = False
        self.log.append(record)
        if not ok and attempt <= len(self.retry_delays_s):
            task = asyncio.create_task(self._retry_later(item, endpoint_id, attempt))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)

    async def _retry_later(self, item: dict[str, Any], endpoint_id: str, attempt: int) -> None:
        await asyncio.sleep(self.retry_delays_s[attempt - 1])
        await self._deliver(item, endpoint_id, attempt=attempt + 1)
