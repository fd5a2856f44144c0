"""The Ray side of a gateway: calls to room and session hosts, and the streams that feed it.

A gateway (Serve replica or edge actor) holds one stream per host. Each stream is a Ray streaming
generator (``RoomHost.stream``) whose items are delivery batches for this gateway only. When a
stream breaks (the host died, or cut us for falling behind), the pump resubscribes as soon as the
restarted host answers and then resyncs: every socket in a room on that host rejoins with the last
seq it saw, every user re-registers, and Yjs sockets are closed with 1013 so their clients resync.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

from ray.actor import ActorHandle
from ray.exceptions import ActorUnavailableError, RayActorError, RaySystemError

from accounts import service as accounts
from accounts.model import Principal
from actors.host_channel import REPLY, HostChannel
from actors.room_host import room_host, session_host
from rooms.fanout import GatewayUnknown
from rooms.gateway import Authenticator, BackendUnavailable, ClientConnection, Gateway
from rooms.model import Endpoint
from rooms.placement import host_index
from verseflow import logs
from verseflow.coalesce import Coalescer
from verseflow.errors import Unauthorized
from verseflow.redis_client import create_redis
from verseflow.security import AccessClaims
from verseflow.settings import Settings

log = logs.get_logger("actors.realtime_backend")

_UNAVAILABLE = (RayActorError, ActorUnavailableError, RaySystemError, ConnectionError)
SUBSCRIBE_TIMEOUT_S = 30.0


class RayBackend:
    """Implements :class:`rooms.gateway.Backend` over the host actors."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._gateway: Gateway | None = None
        self._subscribed: dict[tuple[str, int], asyncio.Event] = {}
        self._pumps: list[asyncio.Task[None]] = []
        self._channels: dict[tuple[str, int], HostChannel] = {}
        self._resyncs: set[asyncio.Task[None]] = set()

    async def start(self, gateway: Gateway) -> None:
        """Subscribe to every host; returns once each stream is live."""
        self._gateway = gateway
        keys = [("room", i) for i in range(self._settings.room_hosts)]
        keys += [("session", i) for i in range(self._settings.session_hosts)]
        for key in keys:
            self._subscribed[key] = asyncio.Event()
            self._pumps.append(asyncio.get_running_loop().create_task(self._pump(*key)))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._subscribed.values())), SUBSCRIBE_TIMEOUT_S)

    async def stop(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    # -- Backend ----------------------------------------------------------------------------------

    async def session_connect(self, endpoint: Endpoint, user_id: uuid.UUID) -> None:
        await self._call("session", user_id, "connect", endpoint.gateway, endpoint.conn, user_id)

    async def session_disconnect(self, endpoint: Endpoint, user_id: uuid.UUID) -> None:
        await self._call("session", user_id, "disconnect", endpoint.gateway, endpoint.conn, user_id)

    async def join(self, endpoint: Endpoint, who: Principal, room_id: uuid.UUID, since: int | None) -> None:
        await self._call("room", room_id, "join", endpoint.gateway, endpoint.conn, who, room_id, since)

    async def leave(self, endpoint: Endpoint, room_id: uuid.UUID) -> None:
        await self._call("room", room_id, "leave", endpoint.gateway, endpoint.conn, room_id)

    async def chat(self, endpoint: Endpoint, room_id: uuid.UUID, text: str, ref: str | None) -> None:
        await self._call("room", room_id, "chat", endpoint.gateway, endpoint.conn, room_id, text, ref)

    async def set_transport(self, endpoint: Endpoint, room_id: uuid.UUID, state: dict[str, Any]) -> None:
        await self._call("room", room_id, "set_transport", endpoint.gateway, endpoint.conn, room_id, state)

    async def doc_open(self, endpoint: Endpoint, who: Principal, room_id: uuid.UUID) -> None:
        await self._call("room", room_id, "doc_open", endpoint.gateway, endpoint.conn, who, room_id)

    async def doc_frame(self, endpoint: Endpoint, room_id: uuid.UUID, frame: bytes) -> None:
        await self._call("room", room_id, "doc_frame", endpoint.gateway, endpoint.conn, room_id, frame)

    async def doc_close(self, endpoint: Endpoint, room_id: uuid.UUID) -> None:
        await self._call("room", room_id, "doc_close", endpoint.gateway, endpoint.conn, room_id)

    # -- internals --------------------------------------------------------------------------------

    def _host(self, kind: str, index: int) -> ActorHandle:
        return room_host(self._settings, index) if kind == "room" else session_host(self._settings, index)

    def _index(self, kind: str, key: uuid.UUID | str) -> int:
        return host_index(str(key), self._settings.room_hosts if kind == "room" else self._settings.session_hosts)

    async def _call(self, kind: str, key: uuid.UUID | str, method: str, *args: Any) -> Any:
        index = self._index(kind, key)
        subscribed = self._subscribed[(kind, index)]
        if not subscribed.is_set():
            try:
                await asyncio.wait_for(subscribed.wait(), 5.0)
            except TimeoutError:
                raise BackendUnavailable(f"{kind} host {index} is restarting") from None
        try:
            return await self._channel(kind, index).call(method, args)
        except GatewayUnknown:
            raise BackendUnavailable(f"{kind} host {index} restarted; resyncing") from None
        except _UNAVAILABLE as exc:
            raise BackendUnavailable(f"{kind} host {index} unreachable") from exc

    def _channel(self, kind: str, index: int) -> HostChannel:
        channel = self._channels.get((kind, index))
        if channel is None:
            assert self._gateway is not None
            channel = self._channels[(kind, index)] = HostChannel(lambda: self._host(kind, index), self._gateway.id)
        return channel

    def stats(self) -> dict[str, dict[str, int]]:
        """Per host: batches submitted, calls they carried, calls waiting for a reply."""
        return {f"{kind}-{index}": channel.stats() for (kind, index), channel in self._channels.items()}

    async def _pump(self, kind: str, index: int) -> None:
        """Keep one stream alive; deliver its batches and hand its replies to the waiting calls;
        resubscribe and resync after a break."""
        assert self._gateway is not None
        event = self._subscribed[(kind, index)]
        channel = self._channel(kind, index)
        first = True
        delay = 0.1
        while True:
            try:
                stream = self._host(kind, index).stream.remote(self._gateway.id)
                await (await stream.__anext__())  # the empty "subscribed" batch
                event.set()
                delay = 0.1
                if not first:  # in its own task: the rejoins' replies arrive on this very stream
                    self._resyncs.add(task := asyncio.get_running_loop().create_task(self._resync(kind, index)))
                    task.add_done_callback(self._resyncs.discard)
                first = False
                async for ref in stream:
                    batch = await ref
                    replies = [d for d in batch if d[0] == REPLY]
                    if replies:
                        batch = [d for d in batch if d[0] != REPLY]
                    self._gateway.deliver(batch)
                    channel.resolve(replies)
                raise ConnectionError("stream ended")
            except asyncio.CancelledError:
                channel.fail_all(BackendUnavailable(f"{kind} host {index}: gateway stopping"))
                raise
            except Exception as exc:  # noqa: BLE001 - any break means: resubscribe
                event.clear()
                channel.fail_all(BackendUnavailable(f"{kind} host {index} stream broke; resyncing"))
                log.warning("%s host %s stream broke (%s); resubscribing", kind, index, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _resync(self, kind: str, index: int) -> None:
        gateway = self._gateway
        assert gateway is not None
        calls: list[Awaitable[None]] = []
        if kind == "session":
            for conn in gateway.sockets():
                if conn.doc_room is None and self._index("session", conn.principal.user_id) == index:
                    calls.append(self.session_connect(conn.endpoint, conn.principal.user_id))
        else:
            for conn, room, last in gateway.memberships():
                if self._index("room", room) == index:
                    calls.append(self._rejoin(conn, room, last))
            for conn in gateway.documents():
                if conn.doc_room and self._index("room", conn.doc_room) == index:
                    gateway.cut(conn, 1013, "room host restarted, reconnect to resync")
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = sum(1 for r in results if isinstance(r, Exception))
        log.info("%s host %s resynced %d sockets (%d failed)", kind, index, len(calls), failed)

    async def _rejoin(self, conn: ClientConnection, room: str, last: int) -> None:
        """Rejoin from ``last``; on failure keep ``last`` so the next resync tries again."""
        conn.rooms[room] = None
        try:
            await self.join(conn.endpoint, conn.principal, uuid.UUID(room), last)
        except Exception:
            if room in conn.rooms and conn.rooms[room] is None:
                conn.rooms[room] = last
            raise


def token_authenticator(settings: Settings) -> Authenticator:
    """The gateways' token check: signature and expiry here, the revocation lists in Redis, looked up
    for all the sockets authenticating in the same event-loop turn at once (a reconnect storm)."""
    redis = create_redis(settings)
    revocations: Coalescer[AccessClaims, bool] = Coalescer(
        lambda claims: accounts.revoked_claims(redis, settings, claims))

    async def authenticate(token: str) -> AccessClaims:
        claims = accounts.decode_claims(settings, token)
        if await revocations.get(claims):
            raise Unauthorized("access token revoked")
        return claims

    return authenticate
