"""Helpers for tests that drive the local Stripe server with the real ``stripe`` SDK."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import stripe

from stripelocal import LocalStripe


def client_for(server: LocalStripe, **options: Any) -> stripe.StripeClient:
    """A ``StripeClient`` whose API base is the local server (how VerseFlow points the SDK at it)."""
    return stripe.StripeClient(server.api_key, base_addresses={"api": server.url}, **options)


class WebhookSink:
    """A plain HTTP receiver recording every webhook delivery (raw body and headers), answering ``status``."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.received.append({"body": body, "headers": dict(self.headers), "status": sink.status})
                self.send_response(sink.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(item["body"]) for item in self.received]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def wait_for(condition: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    """Poll until ``condition()`` is truthy (deliveries are asynchronous), failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
