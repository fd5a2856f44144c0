"""The realtime edge: one Ray actor per node serving the realtime protocol with ``websockets``.

Serve's proxy relays every WebSocket frame to a replica as Ray calls, which caps a node near
15,000 frames/s (docs/realtime.md has the measurements). The edge terminates sockets itself, in
one process per node as Serve's own proxy does, and runs the same :class:`rooms.gateway.Gateway`
as the Serve gateway: ``/v1/ws`` (chat protocol) and ``/v1/yjs/{room}`` (y-websocket) on
``VERSEFLOW_EDGE_PORT``. Deliveries are written straight into each socket's transport while it has
room (``send_nowait``), the way ``websockets.broadcast`` does, with no task per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConcurrencyError, ConnectionClosed
from websockets.frames import Frame as WireFrame
from websockets.frames import Opcode
from websockets.protocol import State

from actors import named
from actors.realtime_backend import RayBackend, token_authenticator
from rooms.gateway import Frame, Gateway, Prepared, SocketClosed
from verseflow import logs
from verseflow.settings import Settings

NAMESPACE = named.NAMESPACE
EDGE_NAME = "verseflow-edge-{}"
_DOC_PATH = re.compile(r"^/v1/yjs/([^/?]+)$")
GC_THRESHOLDS = (50_000, 50, 100)
_WRITE_HIGH_WATER = 256 * 1024  # bytes buffered in a transport before deliveries queue instead

log = logs.get_logger("actors.edge")


class _WebsocketsSocket:
    """:class:`rooms.gateway.Socket` over a ``websockets`` server connection (already accepted)."""

    __slots__ = ("_c",)

    def __init__(self, connection: ServerConnection) -> None:
        self._c = connection

    async def accept(self) -> None:
        return None

    async def receive(self) -> Frame:
        try:
            return await self._c.recv()
        except ConnectionClosed:
            raise SocketClosed from None

    async def send(self, frame: Frame) -> None:
        if isinstance(frame, Prepared):
            for text in frame.texts:
                await self._c.send(text)
        else:
            await self._c.send(frame)

    def send_nowait(self, frame: Frame) -> bool:
        c = self._c
        if c.protocol.state is not State.OPEN:
            return True  # closing: drop, the reader cleans up
        if c.send_in_progress is not None or c.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
            return False
        if isinstance(frame, Prepared):
            # Server frames are unmasked and uncompressed (compression=None): the same bytes suit
            # every socket, so a room's messages are framed once and written as they are, a run of
            # them in one write.
            if frame.encoded is None:
                frame.encoded = b"".join(WireFrame(Opcode.TEXT, text.encode()).serialize(mask=False)
                                         for text in frame.texts)
            c.transport.write(frame.encoded)
            return True
        if isinstance(frame, str):
            c.protocol.send_text(frame.encode())
        else:
            c.protocol.send_binary(frame)
        c.send_data()
        return True

    async def close(self, code: int, reason: str) -> None:
        """Close, reading on meanwhile: frames the peer sent before its close reply (a flood that hit
        the rate limit) would otherwise fill the receive queue, pause reading, and hold the
        handshake until ``close_timeout``."""
        closing = asyncio.ensure_future(self._c.close(code, reason))
        with contextlib.suppress(ConnectionClosed, ConcurrencyError):
            while not closing.done():
                await self._c.recv()
        await closing


@ray.remote(max_restarts=-1, num_cpus=0, max_concurrency=100_000)
class EdgeGateway:
    def __init__(self, settings: Settings) -> None:
        logs.configure()
        self._settings = settings
        self._backend = RayBackend(settings)
        self._gateway = Gateway(settings, self._backend, token_authenticator(settings), kind="edge")
        self._server: Server | None = None
        self._started = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        await self._backend.start(self._gateway)
        self._server = await serve(
            self._handle, self._settings.edge_host, self._settings.edge_port,
            max_size=self._settings.ws_max_message_bytes, compression=None, ping_interval=20, ping_timeout=20,
            process_request=self._route, server_header=None, backlog=self._settings.edge_listen_backlog,
        )
        # Everything allocated so far (modules, Ray's and the gateway's state) lives as long as the
        # process: keep it out of the collector's full passes, which then only walk socket objects.
        gc.freeze()
        # Each socket allocates a few hundred objects that live as long as it does, so a connect storm
        # keeps triggering young collections that find nothing to free (measured: 10-15 % of the edge's
        # CPU while 3,000 sockets connect). Collect the young generation every 50,000 allocations
        # instead of 700; full collections still follow Python's own rule (25 % growth).
        gc.set_threshold(*GC_THRESHOLDS)

    async def ready(self) -> str:
        """The URL clients use for this edge, once it listens."""
        await asyncio.shield(self._started)
        return self.url()

    def url(self) -> str:
        if self._settings.edge_public_url:
            return self._settings.edge_public_url
        host = self._settings.edge_host
        if host in ("0.0.0.0", "::"):
            host = ray.util.get_node_ip_address()
        return f"ws://{host}:{self._settings.edge_port}/v1/ws"

    async def stats(self) -> dict[str, Any]:
        return {**self._gateway.stats(), "hosts": self._backend.stats()}

    async def stop(self) -> None:
        await self._gateway.shutdown()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        await self._backend.stop()

    def _route(self, connection: ServerConnection, request: Any) -> Any:
        path = urlsplit(request.path).path
        if path != "/v1/ws" and not _DOC_PATH.match(path):
            return connection.respond(http.HTTPStatus.NOT_FOUND, "no such WebSocket endpoint\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        parts = urlsplit(connection.request.path)
        token = (parse_qs(parts.query).get("token") or [None])[0]
        socket = _WebsocketsSocket(connection)
        match = _DOC_PATH.match(parts.path)
        if match:
            await self._gateway.serve_document(socket, match.group(1), token)
        else:
            await self._gateway.serve_chat(socket, token)


def start_edges(settings: Settings, ports: dict[str, int] | None = None) -> list[Any]:
    """One edge per alive node, pinned there; returns their handles once they listen.

    ``ports`` maps node ids to the port of their edge, for several nodes on one machine (the
    multi-node benchmark); otherwise every edge listens on ``edge_port``. An edge dies with its node
    (the affinity is hard): its clients reconnect through another edge."""
    edges = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        node_settings = settings
        if ports is not None:
            node_settings = settings.model_copy(update={"edge_port": ports[node["NodeID"]]})
        edges.append(EdgeGateway.options(
            name=EDGE_NAME.format(node["NodeID"][:12]), namespace=NAMESPACE, lifetime="detached",
            get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False),
        ).remote(node_settings))
    ray.get([edge.ready.remote() for edge in edges], timeout=120)
    return edges


def stop_edges(edges: list[Any]) -> None:
    with contextlib.suppress(Exception):
        ray.get([edge.stop.remote() for edge in edges], timeout=30)
    for edge in edges:
        with contextlib.suppress(Exception):
            ray.kill(edge, no_restart=True)


_EDGE_URLS_TTL_S = 10.0
_edge_urls_cache: tuple[float, list[str]] = (0.0, [])


async def edge_urls() -> list[str]:
    """URLs of the running edges (for ``GET /v1/realtime``), looked up at most every 10 s: listing
    named actors asks the GCS, which no client request should wait on each time."""
    global _edge_urls_cache
    fetched_at, urls = _edge_urls_cache
    if time.monotonic() - fetched_at < _EDGE_URLS_TTL_S and urls:
        return urls
    urls = await _lookup_edge_urls()
    _edge_urls_cache = (time.monotonic(), urls)
    return urls


async def _lookup_edge_urls() -> list[str]:
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a.get("namespace") == NAMESPACE and a["name"].startswith(EDGE_NAME.format(""))]
    urls = []
    for name in names:
        with contextlib.suppress(Exception):
            urls.append(await ray.get_actor(name, namespace=NAMESPACE).url.remote())
    return sorted(urls)
