"""The ``gateway`` Serve deployment: ``WS /v1/ws`` and ``WS /v1/yjs/{room}`` on Serve's port.

The simple transport: same port as the REST API, no extra process to run. Each replica runs one
:class:`rooms.gateway.Gateway` (the same handler as the realtime edge) with its own streams from
the room and session hosts. Serve relays every frame between its proxy and the replica as Ray
calls, so at scale clients should use the edge (``GET /v1/realtime``); see docs/realtime.md.

Each socket holds one of the replica's ``max_ongoing_requests`` for its whole life, so the limit is
``VERSEFLOW_GATEWAY_SCALING__MAX_ONGOING_REQUESTS`` (20,000), not Serve's default of 5.
"""

import asyncio
import threading

from fastapi import FastAPI, WebSocket
from ray import serve
from starlette.websockets import WebSocketDisconnect, WebSocketState

from actors.edge import start_edges
from actors.realtime_backend import RayBackend, token_authenticator
from rooms.gateway import Frame, Gateway, Prepared, SocketClosed
from verseflow import logs
from verseflow.settings import get_settings


class _StarletteSocket:
    """:class:`rooms.gateway.Socket` over Starlette's WebSocket."""

    __slots__ = ("_ws",)

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def accept(self) -> None:
        await self._ws.accept()

    async def receive(self) -> Frame:
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            raise SocketClosed from None
        if message["type"] == "websocket.disconnect":
            raise SocketClosed
        text = message.get("text")
        return text if text is not None else (message.get("bytes") or b"")

    async def send(self, frame: Frame) -> None:
        if isinstance(frame, Prepared):
            for text in frame.texts:
                await self._ws.send_text(text)
        elif isinstance(frame, str):
            await self._ws.send_text(frame)
        else:
            await self._ws.send_bytes(frame)

    def send_nowait(self, frame: Frame) -> bool:
        return False  # ASGI has no non-blocking send: deliveries go through the socket's queue

    async def close(self, code: int, reason: str) -> None:
        if self._ws.application_state != WebSocketState.DISCONNECTED:
            await self._ws.close(code, reason)


class _PrefixRoot:
    """Serve hands a request for exactly ``/v1/ws`` (the app's route prefix) with an empty relative
    path, which no Starlette route matches; this makes it ``/``."""

    def __init__(self, app) -> None:  # noqa: ANN001 - an ASGI app
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI
        root = scope.get("root_path", "")
        if scope["type"] in ("http", "websocket") and root and scope["path"].rstrip("/") == root.rstrip("/"):
            scope = {**scope, "path": root + "/", "raw_path": (root + "/").encode()}
        await self.app(scope, receive, send)


chat_app = FastAPI(title="VerseFlow realtime gateway", openapi_url=None, docs_url=None, redoc_url=None)
chat_app.add_middleware(_PrefixRoot)
document_app = FastAPI(title="VerseFlow document gateway", openapi_url=None, docs_url=None, redoc_url=None)


class _GatewayReplica:
    """One :class:`Gateway` per replica, subscribed to the hosts on the first socket."""

    kind = "serve"

    def __init__(self) -> None:
        logs.configure()
        self._settings = get_settings()
        self._backend = RayBackend(self._settings)
        self._gateway = Gateway(self._settings, self._backend, token_authenticator(self._settings), kind=self.kind)
        self._started: asyncio.Task | None = None

    async def _ready(self) -> Gateway:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_task(self._backend.start(self._gateway))
        await asyncio.shield(self._started)
        return self._gateway

    async def check_health(self) -> None:
        if self._started is not None and self._started.done() and self._started.exception():
            raise RuntimeError("gateway could not subscribe to the hosts")


@serve.deployment(name="gateway", max_ongoing_requests=20_000, health_check_period_s=10)
@serve.ingress(chat_app)
class RealtimeGateway(_GatewayReplica):
    """``WS /v1/ws`` (the application's route prefix).

    Its replicas also make sure every node runs a realtime edge (in a background thread: creating
    actors blocks), so ``serve deploy`` onto a cluster brings the edges up without ``make up``.
    """

    def __init__(self) -> None:
        super().__init__()
        if self._settings.edge_port:
            threading.Thread(target=self._ensure_edges, name="ensure-edges", daemon=True).start()

    def _ensure_edges(self) -> None:
        try:
            start_edges(self._settings)
        except Exception:  # noqa: BLE001 - the Serve transport works without edges
            logs.get_logger("serve.gateway").exception("could not start the realtime edges")

    @chat_app.websocket("/")
    async def chat(self, websocket: WebSocket, token: str | None = None) -> None:
        gateway = await self._ready()
        await gateway.serve_chat(_StarletteSocket(websocket), token)


@serve.deployment(name="documents", max_ongoing_requests=20_000, health_check_period_s=10)
@serve.ingress(document_app)
class DocumentGateway(_GatewayReplica):
    """``WS /v1/yjs/{room}`` (the application's route prefix is ``/v1/yjs``)."""

    kind = "serve-yjs"

    @document_app.websocket("/{room}")
    async def document(self, websocket: WebSocket, room: str, token: str | None = None) -> None:
        gateway = await self._ready()
        await gateway.serve_document(_StarletteSocket(websocket), room, token)
