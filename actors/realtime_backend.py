"""The host side of a gateway: calls to room and session hosts, and the deliveries they send back.

A gateway (Serve replica or edge actor) holds one host link per host (``actors/host_link.py``): a
TCP connection found through Ray, carrying the gateway's calls one way and its deliveries (and the
calls' replies) the other. When a link breaks (the host died, or cut us for falling behind), the
link reconnects as soon as the restarted host answers and the gateway resyncs: every socket in a
room on that host rejoins with the last seq it saw, every user re-registers, and Yjs sockets are
closed with 1013 so their clients resync.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ray.actor import ActorHandle
from ray.exceptions import ActorUnavailableError, RayActorError, RaySystemError

from accounts import service as accounts
from accounts.model import Principal
from actors.host_link import HostLink, link_key
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
    """Implements :class:`rooms.gateway.Backend` over host links to the host actors."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._gateway: Gateway | None = None
        self._links: dict[tuple[str, int], HostLink] = {}
        self._runners: list[asyncio.Task[None]] = []
        self._resyncs: set[asyncio.Task[None]] = set()

    async def start(self, gateway: Gateway) -> None:
        """Link to every host; returns once each link is up."""
        self._gateway = gateway
        key = link_key(self._settings.secret())
        keys = [("room", i) for i in range(self._settings.room_hosts)]
        keys += [("session", i) for i in range(self._settings.session_hosts)]
        for kind, index in keys:
            link = self._links[(kind, index)] = HostLink(
                f"{kind} host {index}", gateway.id, key, self._address_of(kind, index), gateway.deliver,
                self._on_subscribed(kind, index))
            self._runners.append(asyncio.get_running_loop().create_task(link.run()))
        await asyncio.wait_for(asyncio.gather(*(link.up.wait() for link in self._links.values())),
                               SUBSCRIBE_TIMEOUT_S)

    async def stop(self) -> None:
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per host link: frames of calls sent, calls they carried, calls waiting for a reply."""
        return {f"{kind}-{index}": link.stats() for (kind, index), link in self._links.items()}

    # -- Backend ----------------------------------------------------------------------------------

    async def session_connect(self, endpoint: Endpoint, user_id: uuid.UUID) -> None:
        """Register a socket with its user's session host; fails at once while that host is restarting.

        Waiting for it would hold the socket's ``ready`` (and so every reconnect after a node loss) until
        Ray has noticed the node is gone and restarted the host elsewhere: seconds. The socket is in
        ``gateway.sockets()`` already, so the resync that follows the host's return registers it."""
        await self._call("session", user_id, "connect", endpoint.gateway, endpoint.conn, user_id, wait=False)

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

    def _address_of(self, kind: str, index: int) -> Callable[[], Awaitable[tuple[str, int]]]:
        async def address() -> tuple[str, int]:
            return await self._host(kind, index).link_address.remote()

        return address

    def _on_subscribed(self, kind: str, index: int) -> Callable[[bool], None]:
        def subscribed(first: bool) -> None:
            if not first:  # in its own task: the rejoins' replies arrive on this very link
                task = asyncio.get_running_loop().create_task(self._resync(kind, index))
                self._resyncs.add(task)
                task.add_done_callback(self._resyncs.discard)

        return subscribed

    async def _call(self, kind: str, key: uuid.UUID | str, method: str, *args: Any, wait: bool = True) -> Any:
        """``method`` on the host owning ``key``; waits up to 5 s for a restarting host unless not ``wait``."""
        index = self._index(kind, key)
        link = self._links[(kind, index)]
        if not link.up.is_set():
            if not wait:
                raise BackendUnavailable(f"{kind} host {index} is restarting")
            try:
                await asyncio.wait_for(link.up.wait(), 5.0)
            except TimeoutError:
                raise BackendUnavailable(f"{kind} host {index} is restarting") from None
        try:
            return await link.call(method, args)
        except GatewayUnknown:
            raise BackendUnavailable(f"{kind} host {index} restarted; resyncing") from None
        except _UNAVAILABLE as exc:
            raise BackendUnavailable(f"{kind} host {index} unreachable") from exc

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
