"""Pure-ASGI middleware: request id, per-route metrics and access logs.

Written against ASGI directly rather than ``BaseHTTPMiddleware`` so that it adds one function call
per request and never buffers bodies. Body size limits are FastAPI's own (``max_body_size``).
"""

from __future__ import annotations

import json
import re
import time
import uuid

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from verseflow.logs import get_logger, request_id_var
from verseflow.metrics import HttpMetrics

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
log = get_logger("access")
_TOO_LARGE = json.dumps({"type": "/problems/content-too-large", "title": "Content Too Large", "status": 413,
                         "detail": "the request body exceeds the size limit for this route"}).encode()


class RequestContextMiddleware:
    """Request id in, request id out; metrics and one log line per request."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        rewriting = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, rewriting
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 413 and _is_plain_text(message):
                    rewriting = True  # Starlette's body limiter answers in text/plain
                    message = _problem_start(413, _TOO_LARGE)
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif rewriting and message["type"] == "http.response.body":
                if message.get("more_body"):
                    return
                message = {"type": "http.response.body", "body": _TOO_LARGE}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            self.metrics.observe(route, scope["method"], status, elapsed)
            log.info("request", extra={"method": scope["method"], "route": route, "status": status,
                                       "duration_ms": round(elapsed * 1000, 2)})
            request_id_var.reset(token)


def _route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/playlists/{playlist_id}``), never the raw path,
    so metric cardinality stays bounded."""
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        return route.path
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(scope)
        if match is Match.FULL and getattr(candidate, "path", None):
            return candidate.path
    return "unmatched"


def _is_plain_text(start: Message) -> bool:
    return any(k == b"content-type" and v.startswith(b"text/plain") for k, v in start.get("headers", []))


def _problem_start(status: int, body: bytes) -> Message:
    return {"type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]}
