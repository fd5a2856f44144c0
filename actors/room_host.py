"""``RoomHost`` and ``SessionHost``: the Ray actors that host virtual rooms and user sessions.

A fixed pool of each (``VERSEFLOW_ROOM_HOSTS``, ``VERSEFLOW_SESSION_HOSTS``), named so that every
gateway finds them, detached, restarted by Ray after a crash (``max_restarts=-1``) and then rebuilt
from PostgreSQL (rooms) and from the gateways' resync (sessions). Calls are not retried by Ray
(``max_task_retries=0``): a chat must not be persisted twice behind the client's back; the client
retries with its ``ref`` instead, which the room log deduplicates.

Gateways reach a host's rooms and sessions over a host link (``actors/host_link.py``: a TCP
connection whose address ``link_address()`` gives); the Ray methods here serve everything else
(notifications from jobs, role changes, kicks and document reads from the API, stats).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from accounts.model import Principal
from actors import named
from actors.host_link import LinkServer, link_key
from rooms import metrics
from rooms.host import RoomHostCore
from rooms.model import Endpoint
from rooms.placement import host_index
from rooms.sessions import SessionHostCore
from verseflow import logs
from verseflow.db import create_pool
from verseflow.settings import Settings

NAMESPACE = named.NAMESPACE
ROOM_HOST_NAME = "verseflow-room-host-{}"
SESSION_HOST_NAME = "verseflow-session-host-{}"
_ACTOR_OPTIONS: dict[str, Any] = {"max_restarts": -1, "max_task_retries": 0, "num_cpus": 0,
                                  "max_concurrency": 100_000}


@ray.remote(**_ACTOR_OPTIONS)
class RoomHost:
    def __init__(self, settings: Settings) -> None:
        logs.configure()
        _count_recovery("room")
        self._settings = settings
        self._stop = asyncio.Event()
        self._core_task = asyncio.get_running_loop().create_task(self._start())
        self._link_task = asyncio.get_running_loop().create_task(self._serve_links())

    async def _start(self) -> RoomHostCore:
        pool = await create_pool(self._settings)
        core = RoomHostCore(pool, self._settings)
        asyncio.get_running_loop().create_task(core.run_housekeeping(self._stop))
        return core

    async def _core(self) -> RoomHostCore:
        return await asyncio.shield(self._core_task)

    async def _serve_links(self) -> tuple[str, int]:
        core = await self._core()
        return await LinkServer(self, core.outboxes, link_key(self._settings.secret())).start(_link_host())

    async def link_address(self) -> tuple[str, int]:
        """Where gateways connect for the hot path (actors/host_link.py); new after every restart."""
        return await asyncio.shield(self._link_task)

    async def join(self, gateway: str, conn: str, who: Principal, room_id: uuid.UUID, since: int | None) -> None:
        await (await self._core()).join(Endpoint(gateway, conn), who, room_id, since)

    async def leave(self, gateway: str, conn: str, room_id: uuid.UUID) -> None:
        await (await self._core()).leave(Endpoint(gateway, conn), room_id)

    async def chat(self, gateway: str, conn: str, room_id: uuid.UUID, text: str, ref: str | None) -> None:
        await (await self._core()).chat(Endpoint(gateway, conn), room_id, text, ref)

    async def set_transport(self, gateway: str, conn: str, room_id: uuid.UUID, state: dict[str, Any]) -> None:
        await (await self._core()).set_transport(Endpoint(gateway, conn), room_id, state)

    async def kick(self, room_id: uuid.UUID, user_id: uuid.UUID) -> int:
        return await (await self._core()).kick(room_id, user_id)

    async def set_role(self, room_id: uuid.UUID, user_id: uuid.UUID) -> int:
        return await (await self._core()).set_role(room_id, user_id)

    async def online(self, room_id: uuid.UUID) -> list[dict[str, Any]]:
        return await (await self._core()).online(room_id)

    async def doc_open(self, gateway: str, conn: str, who: Principal, room_id: uuid.UUID) -> None:
        await (await self._core()).doc_open(Endpoint(gateway, conn), who, room_id)

    async def doc_frame(self, gateway: str, conn: str, room_id: uuid.UUID, frame: bytes) -> None:
        await (await self._core()).doc_frame(Endpoint(gateway, conn), room_id, frame)

    async def doc_close(self, gateway: str, conn: str, room_id: uuid.UUID) -> None:
        await (await self._core()).doc_close(Endpoint(gateway, conn), room_id)

    async def document(self, room_id: uuid.UUID) -> dict[str, Any]:
        return await (await self._core()).document_json(room_id)

    async def stats(self) -> dict[str, int]:
        return (await self._core()).stats()


@ray.remote(**_ACTOR_OPTIONS)
class SessionHost:
    def __init__(self, settings: Settings) -> None:
        logs.configure()
        _count_recovery("session")
        self._core = SessionHostCore()
        server = LinkServer(self, self._core.outboxes, link_key(settings.secret()))
        self._link_task = asyncio.get_running_loop().create_task(server.start(_link_host()))

    async def link_address(self) -> tuple[str, int]:
        """Where gateways connect for the hot path (actors/host_link.py); new after every restart."""
        return await asyncio.shield(self._link_task)

    async def connect(self, gateway: str, conn: str, user_id: uuid.UUID) -> int:
        return self._core.connect(Endpoint(gateway, conn), user_id)

    async def disconnect(self, gateway: str, conn: str, user_id: uuid.UUID) -> None:
        self._core.disconnect(Endpoint(gateway, conn), user_id)

    async def notify(self, user_id: uuid.UUID, event: str, data: dict[str, Any]) -> int:
        return self._core.notify(user_id, event, data)

    async def devices(self, user_id: uuid.UUID) -> int:
        return self._core.devices(user_id)

    async def stats(self) -> dict[str, int]:
        return self._core.stats()


def _count_recovery(kind: str) -> None:
    """A host constructed again by Ray after its process died is a recovery (its rooms reload lazily)."""
    if ray.get_runtime_context().was_current_actor_reconstructed:
        metrics.HOST_RECOVERIES.inc(kind=kind)


def _link_host() -> str:
    """The address a host's link server listens on: this node's, reachable from the other nodes."""
    return ray.util.get_node_ip_address()


def room_host(settings: Settings, index: int) -> ActorHandle:
    """The named room host ``index``, created if it does not exist yet (any caller may be first).

    Handles are cached per process: a restarted actor keeps its id, so a handle outlives crashes.
    """
    return named.get_or_create(RoomHost, ROOM_HOST_NAME.format(index), settings)


def session_host(settings: Settings, index: int) -> ActorHandle:
    return named.get_or_create(SessionHost, SESSION_HOST_NAME.format(index), settings)


def spread_hosts(settings: Settings, node_ids: Sequence[str]) -> list[tuple[str, str]]:
    """Create the host pools across ``node_ids`` (host ``i`` of each pool on node ``i mod n``); returns
    (host name, node id) pairs.

    Left to itself Ray places these zero-CPU actors wherever their first caller runs, so one node can
    end up holding every room: losing it would stall them all at once. Called before anything else
    uses the hosts (the first creation wins). The affinity is soft: a host whose node is gone is
    restarted by Ray on a surviving one, where gateways find it again (``actors/realtime_backend.py``).
    """
    placed = []
    # Ray ignores a soft node affinity for an actor that reserves nothing (measured with Ray 2.60: zero-CPU
    # actors landed on the other nodes), so these reserve a token hundredth of a CPU.
    reserve = {"num_cpus": 0.01}
    for actor_class, name, count in ((RoomHost, ROOM_HOST_NAME, settings.room_hosts),
                                     (SessionHost, SESSION_HOST_NAME, settings.session_hosts)):
        for index in range(count):
            node = node_ids[index % len(node_ids)]
            named.get_or_create(actor_class, name.format(index), settings, **reserve,
                                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=True))
            placed.append((name.format(index), node))
    return placed


def room_host_for(settings: Settings, room_id: uuid.UUID | str) -> ActorHandle:
    return room_host(settings, host_index(str(room_id), settings.room_hosts))


def session_host_for(settings: Settings, user_id: uuid.UUID | str) -> ActorHandle:
    return session_host(settings, host_index(str(user_id), settings.session_hosts))


async def notify_user(settings: Settings, user_id: uuid.UUID, event: str, data: dict[str, Any]) -> int:
    """Push a ``notify`` event to every connected device of a user, from anywhere in the cluster."""
    return await session_host_for(settings, user_id).notify.remote(user_id, event, data)


def stop_hosts(settings: Settings) -> None:
    """Kill the host pools for good (``make up``'s Ctrl-C); rooms live on in PostgreSQL."""
    names = [ROOM_HOST_NAME.format(i) for i in range(settings.room_hosts)]
    names += [SESSION_HOST_NAME.format(i) for i in range(settings.session_hosts)]
    named.kill(names)
