"""The protocol handler both transports share: sockets in, host calls out, deliveries back to sockets.

A :class:`Gateway` lives in each Serve ``gateway`` replica and in each realtime edge actor. It owns
the sockets connected to that process and speaks the protocol of :mod:`rooms.protocol`:
authentication before anything else, per-socket rate and size limits, an idle timeout, and a
bounded outbound queue per socket (a slow reader is cut with 4408; the room does not wait).

It calls the session and room hosts through a :class:`Backend` (the Ray adapter is
``actors/realtime_backend.py``) and receives their deliveries in batches through :meth:`deliver`,
each message once per gateway, fanned out here to the local sockets. Per socket and room it
remembers the last seq delivered, which makes resume exact: live messages at or below it are
dropped, and after a host restart the gateway rejoins with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from accounts.model import Principal, Role
from rooms import metrics, protocol
from rooms.fanout import Delivery
from rooms.model import Endpoint
from rooms.protocol import ProtocolError, dumps
from verseflow import logs
from verseflow.errors import DomainError
from verseflow.security import AccessClaims
from verseflow.settings import Settings

log = logs.get_logger("rooms.gateway")

class Prepared:
    """Outgoing text messages shared by many sockets, in order. A transport may cache their wire
    encoding here (the edge keeps the WebSocket frames, concatenated), so a room's fan-out encodes
    once, not per socket, and a run of messages reaches a socket in one write."""

    __slots__ = ("texts", "encoded")

    def __init__(self, *texts: str) -> None:
        self.texts = texts
        self.encoded: bytes | None = None


Frame = str | bytes | Prepared


class SocketClosed(Exception):
    """The peer went away (raised by a socket adapter's ``receive``)."""


class Socket(Protocol):
    """What the gateway needs from a transport (Starlette's WebSocket, the ``websockets`` library)."""

    async def accept(self) -> None: ...

    async def receive(self) -> Frame: ...

    async def send(self, frame: Frame) -> None: ...

    def send_nowait(self, frame: Frame) -> bool:
        """Write without waiting if the transport has room; False means "queue it"."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


class BackendUnavailable(Exception):
    """A host could not be reached (restarting); the client may retry."""


class Backend(Protocol):
    """Calls into session and room hosts; see ``actors/realtime_backend.py``."""

    async def session_connect(self, endpoint: Endpoint, user_id: uuid.UUID) -> None: ...
    async def session_disconnect(self, endpoint: Endpoint, user_id: uuid.UUID) -> None: ...
    async def join(self, endpoint: Endpoint, who: Principal, room_id: uuid.UUID, since: int | None) -> None: ...
    async def leave(self, endpoint: Endpoint, room_id: uuid.UUID) -> None: ...
    async def chat(self, endpoint: Endpoint, room_id: uuid.UUID, text: str, ref: str | None) -> None: ...
    async def set_transport(self, endpoint: Endpoint, room_id: uuid.UUID, state: dict[str, Any]) -> None: ...
    async def doc_open(self, endpoint: Endpoint, who: Principal, room_id: uuid.UUID) -> None: ...
    async def doc_frame(self, endpoint: Endpoint, room_id: uuid.UUID, frame: bytes) -> None: ...
    async def doc_close(self, endpoint: Endpoint, room_id: uuid.UUID) -> None: ...


Authenticator = Callable[[str], Awaitable[AccessClaims]]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, float(burst), float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(eq=False)
class ClientConnection:
    """One socket. ``rooms`` maps a joined room to the last seq delivered (None while joining)."""

    id: str
    principal: Principal
    socket: Socket
    gateway: Gateway
    expires_at: float = float("inf")
    rooms: dict[str, int | None] = field(default_factory=dict)
    #: per room, the highest seq this socket has been sent: kept across rejoins, so that overlapping joins
    #: (the client's own and a resync's after a host restart) never send a message to it twice
    sent: dict[str, int] = field(default_factory=dict)
    doc_room: str | None = None
    backlog: deque[Frame] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.Task[None] | None = None
    closing: bool = False  # no more frames out
    close_sent: bool = False

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.gateway.id, self.id)

    def offer(self, frame: Frame) -> None:
        """Queue a frame; write it at once when nothing is waiting and the transport has room."""
        if self.closing:
            return
        if not self.backlog and self.socket.send_nowait(frame):
            return
        if len(self.backlog) >= self.gateway.settings.ws_outbound_queue:
            metrics.SLOW_CONSUMER_CUTOFFS.inc(transport=self.gateway.kind, reason="queue_full")
            self.gateway.cut(self, protocol.CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full")
            return
        self.backlog.append(frame)
        self.wakeup.set()
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._drain())

    def send_json(self, message: dict[str, Any]) -> None:
        self.offer(dumps(message))

    async def _drain(self) -> None:
        timeout = self.gateway.settings.ws_send_timeout_s
        try:
            while not self.closing:
                await self.wakeup.wait()
                self.wakeup.clear()
                while self.backlog and not self.closing:
                    frame = self.backlog.popleft()
                    await asyncio.wait_for(self.socket.send(frame), timeout)
        except TimeoutError:
            metrics.SLOW_CONSUMER_CUTOFFS.inc(transport=self.gateway.kind, reason="write_timeout")
            self.gateway.cut(self, protocol.CLOSE_SLOW_CONSUMER, f"slow consumer: a write blocked {timeout:g}s")
        except Exception:  # noqa: BLE001 - the reader notices the dead socket and cleans up
            pass


class Gateway:
    """All sockets of one process, for both the chat protocol and Yjs documents."""

    def __init__(self, settings: Settings, backend: Backend, authenticate: Authenticator, *, kind: str) -> None:
        self.settings = settings
        self.backend = backend
        self.authenticate = authenticate
        self.kind = kind  # the transport label of this gateway's metrics
        self.id = f"{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._ids = itertools.count(1)
        self._conns: dict[str, ClientConnection] = {}
        self._rooms: dict[str, set[ClientConnection]] = {}
        self._docs: dict[str, set[ClientConnection]] = {}
        self._users: dict[str, set[ClientConnection]] = {}
        self.delivered = 0
        self._gauge_task: asyncio.Task[None] | None = None

    # -- entry points for transports -------------------------------------------------------------

    async def serve_chat(self, socket: Socket, token: str | None) -> None:
        """Run one ``/v1/ws`` socket from handshake to close."""
        claims = await self._authenticate(socket, token)
        if claims is None:
            return
        conn = self._open(socket, claims)
        principal = conn.principal
        try:  # before `ready`: a notification sent once the client is ready must reach it
            await self.backend.session_connect(conn.endpoint, principal.user_id)
        except BackendUnavailable:
            log.warning("session host unavailable; %s connects without notifications until resync", conn.id)
        conn.send_json({"type": "ready", "user": str(principal.user_id), "session": conn.id,
                        "idle_timeout_s": self.settings.ws_idle_timeout_s, "expires_at": claims.expires_at * 1000})
        try:
            await self._read(conn, self._on_chat_frame, TokenBucket(self.settings.ws_messages_per_s,
                                                                    self.settings.ws_message_burst))
        finally:
            await self._close_chat(conn)

    async def serve_document(self, socket: Socket, room: str, token: str | None) -> None:
        """Run one ``/v1/yjs/{room}`` socket: y-websocket binary frames to and from the room's document."""
        try:
            room_id = uuid.UUID(room)
        except ValueError:
            await socket.accept()
            await socket.close(protocol.CLOSE_NOT_FOUND, "no such room")
            return
        claims = await self._authenticate(socket, token, first_message=False)
        if claims is None:
            return
        conn = self._open(socket, claims)
        principal = conn.principal
        conn.doc_room = str(room_id)
        self._docs.setdefault(conn.doc_room, set()).add(conn)
        try:
            try:
                await self.backend.doc_open(conn.endpoint, principal, room_id)
            except DomainError as exc:
                code = protocol.CLOSE_NOT_FOUND if exc.status == 404 else protocol.CLOSE_FORBIDDEN
                await self._close(conn, code, exc.detail)
                return
            except BackendUnavailable:
                await self._close(conn, 1013, "room host restarting, try again")
                return
            await self._read(conn, self._on_doc_frame, TokenBucket(self.settings.yjs_messages_per_s,
                                                                   self.settings.yjs_message_burst))
        finally:
            self._forget(conn)
            self._docs.get(conn.doc_room, set()).discard(conn)
            with contextlib.suppress(BackendUnavailable, DomainError):
                await self.backend.doc_close(conn.endpoint, room_id)

    # -- deliveries from hosts --------------------------------------------------------------------

    def deliver(self, batch: Sequence[Delivery]) -> None:
        """Fan a host's batch out to local sockets (synchronous: no awaits between frames).

        Consecutive sequenced messages of one room (a group commit's worth) travel as one
        :class:`Prepared`: one write per socket instead of one per message."""
        before = self.delivered
        try:
            self._deliver(batch)
        finally:
            if self.delivered > before:
                metrics.DELIVERED.inc(self.delivered - before, transport=self.kind)

    def _deliver(self, batch: Sequence[Delivery]) -> None:
        i, n = 0, len(batch)
        while i < n:
            kind, key, data, seq, extra = batch[i]
            if kind == "room" and seq:
                j = i + 1
                while j < n and batch[j][0] == "room" and batch[j][1] == key and batch[j][3]:
                    j += 1
                self._deliver_room_run(key, batch[i:j])
                i = j
                continue
            i += 1
            if kind == "room":  # unsequenced (presence): to every member who has joined
                data = Prepared(data)
                for conn in self._rooms.get(key, ()):
                    if conn.rooms.get(key) is not None:
                        conn.offer(data)
                        self.delivered += 1
            elif kind == "conn":
                conn = self._conns.get(key)
                if conn is not None:
                    self._deliver_one(conn, data, seq, extra)
            elif kind == "joined":
                conn = self._conns.get(key)
                if conn is not None and extra in conn.rooms:
                    conn.rooms[extra] = max(seq, conn.sent.get(extra, 0))  # from `since`, less what it has
                    conn.offer(data)
            elif kind == "doc":
                for conn in self._docs.get(key, ()):
                    if conn.id != extra:
                        conn.offer(data)
            elif kind == "drop":
                conn = self._conns.get(key)
                if conn is not None:
                    self._unjoin(conn, extra)
                    conn.sent.pop(extra, None)
            elif kind == "user":
                data = Prepared(data)
                for conn in self._users.get(key, ()):
                    if conn.doc_room is None:
                        conn.offer(data)

    def _deliver_room_run(self, room: str, run: Sequence[Delivery]) -> None:
        """Messages ``run`` (ascending seqs) to the room's sockets: each gets those after its last seq."""
        members = self._rooms.get(room)
        if not members:
            return
        first, newest = run[0][3], run[-1][3]
        accepted_ms = metrics.stamped_ms(run[0][2])
        if accepted_ms is not None:
            metrics.FANOUT_LATENCY.observe(max(0.0, time.time() - accepted_ms / 1000), transport=self.kind)
        whole = Prepared(*(d[2] for d in run))
        for conn in members:
            last = conn.rooms.get(room)
            if last is None or last >= newest:
                continue  # still joining (its `joined` sets the baseline), or has them all already
            if last < first:
                conn.offer(whole)
                self.delivered += len(run)
            else:  # joined in the middle of the run
                rest = [d[2] for d in run if d[3] > last]
                conn.offer(Prepared(*rest))
                self.delivered += len(rest)
            conn.rooms[room] = conn.sent[room] = newest

    def _deliver_one(self, conn: ClientConnection, data: Frame, seq: int, room: str | None) -> None:
        if seq and room is not None:
            last = conn.rooms.get(room)
            if last is None or seq <= last:
                return
            conn.rooms[room] = conn.sent[room] = seq
        conn.offer(data)

    def memberships(self) -> list[tuple[ClientConnection, str, int]]:
        """Every (socket, room, last seq) that has completed a join: what a resync rejoins."""
        return [(c, room, last) for c in self._conns.values() for room, last in c.rooms.items() if last is not None]

    def documents(self) -> list[ClientConnection]:
        return [c for c in self._conns.values() if c.doc_room is not None]

    def sockets(self) -> list[ClientConnection]:
        return list(self._conns.values())

    def cut(self, conn: ClientConnection, code: int, reason: str) -> None:
        """Close a socket from synchronous code (a full queue); nothing more is queued for it meanwhile."""
        if not conn.closing:
            conn.closing = True
            asyncio.get_running_loop().create_task(self._close(conn, code, reason))

    def stats(self) -> dict[str, int]:
        return {"sockets": len(self._conns), "rooms": len(self._rooms), "documents": len(self._docs),
                "delivered": self.delivered}

    async def shutdown(self) -> None:
        if self._gauge_task is not None:
            self._gauge_task.cancel()
        await asyncio.gather(*(self._close(c, protocol.CLOSE_GOING_AWAY, "server shutting down")
                               for c in list(self._conns.values())), return_exceptions=True)

    # -- chat protocol ----------------------------------------------------------------------------

    async def _on_chat_frame(self, conn: ClientConnection, frame: Frame) -> None:
        try:
            message = protocol.parse_client_message(frame)
            await self._handle(conn, message)
        except ProtocolError as exc:
            conn.send_json(protocol.error(exc.code, exc.message, ref=exc.ref))

    async def _handle(self, conn: ClientConnection, message: protocol.ClientMessage) -> None:
        match message:
            case protocol.Ping():
                conn.send_json({"type": "pong", "ts": protocol.now_ms()})
            case protocol.TimeRequest():
                conn.send_json(protocol.time_reply(message))
            case protocol.Join(room=room_id, since=since):
                await self._join(conn, room_id, since)
            case protocol.Leave(room=room_id):
                if str(room_id) not in conn.rooms:
                    raise ProtocolError("not_joined", "not in this room")
                self._unjoin(conn, str(room_id))
                conn.sent.pop(str(room_id), None)  # a later join replays from its own `since`
                await self._host(conn, self.backend.leave(conn.endpoint, room_id), room=str(room_id))
                conn.send_json({"type": "left", "room": str(room_id)})
            case protocol.Chat(room=room_id, text=text, ref=ref):
                if len(text) > self.settings.chat_max_chars:
                    raise ProtocolError("too_long", f"text: at most {self.settings.chat_max_chars} characters", ref=ref)
                self._require_joined(conn, room_id, ref)
                await self._host(conn, self.backend.chat(conn.endpoint, room_id, text, ref), ref=ref,
                                 room=str(room_id))
            case protocol.TransportUpdate(room=room_id):
                self._require_joined(conn, room_id, None)
                state = message.model_dump(mode="json", exclude={"type", "room"})
                await self._host(conn, self.backend.set_transport(conn.endpoint, room_id, state), room=str(room_id))
            case protocol.Auth(token=token):
                await self._reauthenticate(conn, token)

    async def _reauthenticate(self, conn: ClientConnection, token: str) -> None:
        """A fresh token for the same user extends the socket's life past the old token's expiry."""
        try:
            claims = await self.authenticate(token)
        except DomainError as exc:
            raise ProtocolError("unauthorized", exc.detail) from None
        if claims.user_id != conn.principal.user_id:
            raise ProtocolError("forbidden", "a socket stays with the user who opened it")
        conn.expires_at = claims.expires_at
        conn.send_json({"type": "authenticated", "expires_at": claims.expires_at * 1000})

    async def _join(self, conn: ClientConnection, room_id: uuid.UUID, since: int | None) -> None:
        key = str(room_id)
        conn.rooms[key] = None  # joining: live messages wait for the `joined` that sets the baseline
        self._rooms.setdefault(key, set()).add(conn)
        ok = await self._host(conn, self.backend.join(conn.endpoint, conn.principal, room_id, since), room=key)
        if not ok:
            self._unjoin(conn, key)

    async def _host(self, conn: ClientConnection, call: Awaitable[None], *, ref: str | None = None,
                    room: str | None = None) -> bool:
        """Await a host call; its failure becomes an ``error`` message, never a closed socket."""
        try:
            await call
            return True
        except DomainError as exc:
            code = {403: "forbidden", 404: "not_found", 409: "not_joined", 422: "invalid",
                    503: "unavailable"}.get(exc.status, "rejected")
            conn.send_json(protocol.error(code, exc.detail, ref=ref, room=room))
        except BackendUnavailable as exc:
            conn.send_json(protocol.error("unavailable", f"room temporarily unavailable, retry: {exc}",
                                          ref=ref, room=room))
        return False

    def _require_joined(self, conn: ClientConnection, room_id: uuid.UUID, ref: str | None) -> None:
        if conn.rooms.get(str(room_id)) is None:
            raise ProtocolError("not_joined", "join the room first", ref=ref)

    def _unjoin(self, conn: ClientConnection, room: str) -> None:
        conn.rooms.pop(room, None)
        members = self._rooms.get(room)
        if members is not None:
            members.discard(conn)
            if not members:
                del self._rooms[room]

    async def _close_chat(self, conn: ClientConnection) -> None:
        rooms = list(conn.rooms)
        for room in rooms:
            self._unjoin(conn, room)
        self._forget(conn)
        for room in rooms:
            with contextlib.suppress(BackendUnavailable, DomainError):
                await self.backend.leave(conn.endpoint, uuid.UUID(room))
        with contextlib.suppress(BackendUnavailable, DomainError):
            await self.backend.session_disconnect(conn.endpoint, conn.principal.user_id)

    # -- documents -------------------------------------------------------------------------------

    async def _on_doc_frame(self, conn: ClientConnection, frame: Frame) -> None:
        if isinstance(frame, str):
            await self._close(conn, 1003, "y-websocket frames are binary")
            return
        try:
            await self.backend.doc_frame(conn.endpoint, uuid.UUID(conn.doc_room or ""), frame)
        except DomainError as exc:
            await self._close(conn, 1008, exc.detail)
        except BackendUnavailable:
            await self._close(conn, 1013, "room host restarting, reconnect to resync")

    # -- socket lifecycle ------------------------------------------------------------------------

    async def _authenticate(self, socket: Socket, token: str | None, *,
                            first_message: bool = True) -> AccessClaims | None:
        """Check the token before accepting; without one, wait ``ws_auth_timeout_s`` for an ``auth`` message."""
        if token is None and first_message:
            await socket.accept()
            try:
                frame = await asyncio.wait_for(socket.receive(), self.settings.ws_auth_timeout_s)
                message = protocol.parse_client_message(frame)
            except TimeoutError:
                await socket.close(protocol.CLOSE_UNAUTHORIZED, "no auth message in time")
                return None
            except (ProtocolError, SocketClosed):
                await _quiet_close(socket, protocol.CLOSE_UNAUTHORIZED, "first message must be auth")
                return None
            if not isinstance(message, protocol.Auth):
                await socket.close(protocol.CLOSE_UNAUTHORIZED, "first message must be auth")
                return None
            return await self._check(socket, message.token, accepted=True)
        if token is None:
            await socket.accept()
            await socket.close(protocol.CLOSE_UNAUTHORIZED, "missing token")
            return None
        return await self._check(socket, token, accepted=False)

    async def _check(self, socket: Socket, token: str, *, accepted: bool) -> AccessClaims | None:
        try:
            claims = await self.authenticate(token)
        except DomainError as exc:
            if not accepted:
                await socket.accept()  # browsers only see close codes of accepted sockets
            await socket.close(protocol.CLOSE_UNAUTHORIZED, exc.detail[:120])
            return None
        if not accepted:
            await socket.accept()
        return claims

    def _open(self, socket: Socket, claims: AccessClaims) -> ClientConnection:
        principal = Principal(user_id=claims.user_id, role=Role(claims.role))
        conn = ClientConnection(id=f"c{next(self._ids)}", principal=principal, socket=socket, gateway=self,
                                expires_at=claims.expires_at)
        self._conns[conn.id] = conn
        self._users.setdefault(str(principal.user_id), set()).add(conn)
        metrics.OPENED.inc(transport=self.kind)
        metrics.CONNECTIONS.set(len(self._conns), transport=self.kind)
        if self._gauge_task is None:
            with contextlib.suppress(RuntimeError):  # no event loop: a synchronous unit test
                self._gauge_task = asyncio.get_running_loop().create_task(self._report_connections())
        return conn

    async def _report_connections(self) -> None:
        """Re-report the connection gauge while this gateway lives (see ``metrics.GAUGE_REFRESH_S``)."""
        while True:
            await asyncio.sleep(metrics.GAUGE_REFRESH_S)
            metrics.CONNECTIONS.set(len(self._conns), transport=self.kind)

    def _forget(self, conn: ClientConnection) -> None:
        conn.closing = True
        if self._conns.pop(conn.id, None) is not None:
            metrics.CLOSED.inc(transport=self.kind)
            metrics.CONNECTIONS.set(len(self._conns), transport=self.kind)
        devices = self._users.get(str(conn.principal.user_id))
        if devices is not None:
            devices.discard(conn)
            if not devices:
                del self._users[str(conn.principal.user_id)]
        if conn.writer is not None:
            conn.writer.cancel()

    async def _read(self, conn: ClientConnection, on_frame: Callable[[ClientConnection, Frame], Awaitable[None]],
                    bucket: TokenBucket) -> None:
        limit = self.settings.ws_max_message_bytes
        idle = self.settings.ws_idle_timeout_s
        while not conn.closing:
            try:
                wait = max(0.0, min(idle, conn.expires_at - time.time()))
                frame = await asyncio.wait_for(conn.socket.receive(), wait)
            except TimeoutError:
                if time.time() >= conn.expires_at:
                    await self._close(conn, protocol.CLOSE_UNAUTHORIZED, "token expired: send auth with a fresh token")
                else:
                    await self._close(conn, protocol.CLOSE_IDLE, f"idle for {idle:g}s")
                return
            except SocketClosed:
                return
            if len(frame) > limit:
                await self._close(conn, protocol.CLOSE_TOO_LARGE, f"message larger than {limit} bytes")
                return
            if not bucket.take():
                await self._close(conn, protocol.CLOSE_RATE_LIMITED, "too many messages")
                return
            await on_frame(conn, frame)

    async def _close(self, conn: ClientConnection, code: int, reason: str) -> None:
        if conn.close_sent:
            return
        conn.close_sent = conn.closing = True
        metrics.CLOSES.inc(transport=self.kind, code=str(code))
        await _quiet_close(conn.socket, code, reason)



async def _quiet_close(socket: Socket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await socket.close(code, reason)
