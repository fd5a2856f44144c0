"""Run the local Stripe server: in a thread (tests, ``LocalStripe``) or as a process (``python -m stripelocal``).

State is in memory; with ``state_file`` it is also written (atomically) after every mutating request
and read back at start, so ``make up`` keeps customers and subscriptions across restarts.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from stripelocal.app import LocalStripeApp, new_secret_key
from stripelocal.engine import Behaviour, Engine
from stripelocal.webhooks import Deliverer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalStripe:
    """One local Stripe account served over HTTP on ``host:port``."""

    def __init__(self, *, api_key: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 state_file: Path | None = None, behaviour: Behaviour | None = None,
                 webhook_url: str | None = None, webhook_secret: str | None = None,
                 retry_delays_s: tuple[float, ...] = (0.5, 1, 2, 4, 8)) -> None:
        self.api_key = api_key or new_secret_key()
        self.host = host
        self.port = port or free_port()
        self.state_file = state_file
        self.engine = Engine(behaviour=behaviour or Behaviour())
        self.deliverer = Deliverer(retry_delays_s=retry_delays_s)
        self.app = LocalStripeApp(api_key=self.api_key, engine=self.engine, deliverer=self.deliverer,
                                  on_change=self.save if state_file else None)
        if state_file and state_file.exists():
            self.load()
        if webhook_url and not any(e["url"] == webhook_url for e in self.deliverer.endpoints.values()):
            self.deliverer.add_endpoint(webhook_url, ["*"], secret=webhook_secret)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def webhook_secret(self, url: str) -> str:
        return next(e["secret"] for e in self.deliverer.endpoints.values() if e["url"] == url)

    def config(self) -> uvicorn.Config:
        return uvicorn.Config(self.app.starlette(), host=self.host, port=self.port, log_level="warning",
                              lifespan="on", access_log=False)

    def start(self, timeout_s: float = 10.0) -> LocalStripe:
        """Serve in a daemon thread; returns once the port answers."""
        self._server = uvicorn.Server(self.config())
        self._thread = threading.Thread(target=self._server.run, name="stripelocal", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local Stripe server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def serve_forever(self) -> None:
        uvicorn.Server(self.config()).run()

    # ----------------------------------------------------------------- persistence
    def snapshot(self) -> dict[str, Any]:
        return {"objects": self.engine.objects, "events": [e["id"] for e in self.engine.events],
                "idempotency": self.app.idempotency, "endpoints": self.deliverer.endpoints,
                "counter": self.engine.__dict__.get("_counter", 0)}

    def save(self) -> None:
        assert self.state_file is not None
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".stripe-state")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.snapshot(), handle)
        os.replace(tmp, self.state_file)

    def load(self) -> None:
        assert self.state_file is not None
        state = json.loads(self.state_file.read_text())
        self.engine.objects.update(state["objects"])
        self.engine.reindex()
        self.engine.events.extend(self.engine.objects[i] for i in state["events"] if i in self.engine.objects)
        self.engine.__dict__["_counter"] = state.get("counter", 0)
        self.app.idempotency.update(state["idempotency"])
        self.deliverer.endpoints.update(state["endpoints"])
