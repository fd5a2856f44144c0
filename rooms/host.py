"""The room host: many virtual rooms in one process, one message at a time per room.

``RoomHostCore`` is what a ``RoomHost`` Ray actor runs (``actors/room_host.py`` only adapts it).
Each room is activated from PostgreSQL on first use (last seq, recent history, the transport),
changes its membership under its own lock (its mailbox), writes its log through
:mod:`rooms.log_writer` (group commit, a batch at a time under the same lock), and is passivated
after ``room_idle_s`` with nobody online. A message is persisted *before* it is fanned out, so
whatever a client has seen is in the log; after a host restart, gateways rejoin with the last seq each socket
saw and the log fills the gap exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from accounts.model import Principal
from rooms import metrics, repository, yjs_store
from rooms.fanout import Delivery, Outboxes
from rooms.log_writer import LogWriter
from rooms.model import (
    Endpoint,
    LiveRoom,
    Member,
    RoomAccess,
    RoomRole,
    can_control_playback,
    can_edit_document,
    read_only_document_reason,
)
from rooms.protocol import dumps, now_ms
from rooms.yjs import SharedDocument
from verseflow import logs
from verseflow.coalesce import Coalescer
from verseflow.errors import DomainError, Forbidden, NotFound
from verseflow.settings import Settings

log = logs.get_logger("rooms.host")


class NotJoined(DomainError):
    status, title = 409, "Not joined"


class RoomHostCore:
    """Virtual rooms hosted in one process. All public methods are safe to call concurrently."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self._rooms: dict[uuid.UUID, LiveRoom] = {}
        self._docs: dict[uuid.UUID, SharedDocument] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._dirty_presence: set[uuid.UUID] = set()
        # Counts role changes and kicks applied here; a join that looked its role up before one
        # of them looks again (see _settle_role).
        self._role_epoch = 0
        self.outboxes = Outboxes(limit=100_000, on_lost=self._gateway_lost)
        self._log = LogWriter(pool, self.outboxes, self._lock, settings.room_write_batch_max)
        self._accesses: Coalescer[tuple[uuid.UUID, uuid.UUID], RoomAccess | None] = Coalescer(
            lambda keys: repository.load_accesses(pool, keys))

    # -- streams -------------------------------------------------------------------------------

    def subscribe(self, gateway: str) -> AsyncIterator[list[Delivery]]:
        return self.outboxes.subscribe(gateway)

    # -- chat rooms ----------------------------------------------------------------------------

    async def join(self, endpoint: Endpoint, who: Principal, room_id: uuid.UUID, since: int | None) -> None:
        """Add a socket to a room; its ``joined`` and backlog arrive on the gateway's stream."""
        self.outboxes.require(endpoint.gateway)
        epoch = self._role_epoch
        role = await self._role(who, room_id)  # outside the lock: concurrent joins overlap their lookups
        async with self._lock(room_id):
            role = await self._settle_role(who, room_id, role, epoch)
            room = await self._activate(room_id)
            room.add(Member(endpoint=endpoint, user_id=who.user_id, role=role))
            room.idle_since = None
            backlog, truncated = await self._backlog(room, since)
            joined = {
                "type": "joined", "room": str(room_id), "seq": room.seq, "role": role.value,
                "members": room.online(self._settings.room_members_in_joined),
                "online": len(room.devices),
                "transport": _stamped(room.transport), "truncated": truncated,
            }
            baseline = room.seq if since is None else min(since, room.seq)
            self.outboxes.put(endpoint.gateway, ("joined", endpoint.conn, dumps(joined), baseline, str(room_id)))
            for seq, payload in backlog:
                self.outboxes.put(endpoint.gateway, ("conn", endpoint.conn, payload, seq, str(room_id)))
            self._presence_changed(room)

    async def leave(self, endpoint: Endpoint, room_id: uuid.UUID) -> None:
        async with self._lock(room_id):
            room = self._rooms.get(room_id)
            if room is not None and room.remove(endpoint) is not None:
                self._presence_changed(room)
                self._maybe_idle(room)

    async def chat(self, endpoint: Endpoint, room_id: uuid.UUID, text: str, ref: str | None) -> None:
        """Returns once the message is persisted and fanned out (group commit: :mod:`rooms.log_writer`)."""
        room, member = self._member(endpoint, room_id)
        body = {"type": "chat", "room": str(room_id), "from": str(member.user_id), "text": text, "ts": now_ms()}
        if ref is not None:
            body["ref"] = ref
        await self._log.submit(room, endpoint, member.user_id, "chat", body, ref)

    async def set_transport(self, endpoint: Endpoint, room_id: uuid.UUID, state: dict[str, Any]) -> None:
        room, member = self._member(endpoint, room_id)
        if not can_control_playback(member.role):
            raise Forbidden("only the room's host controls playback")
        body = {"type": "transport", "room": str(room_id), "from": str(member.user_id), **state,
                "server_ts": now_ms()}
        await self._log.submit(room, endpoint, member.user_id, "transport", body, None)

    async def kick(self, room_id: uuid.UUID, user_id: uuid.UUID) -> int:
        """Disconnect a user's sockets from the room (the ban itself is in the database). Returns sockets cut."""
        self._role_epoch += 1
        async with self._lock(room_id):
            room = self._rooms.get(room_id)
            if room is None:
                return 0
            cut = [e for e, m in room.members.items() if m.user_id == user_id]
            cut += [e for e, m in room.doc_members.items() if e not in cut and m.user_id == user_id]
            kicked = dumps({"type": "kicked", "room": str(room_id)})
            for endpoint in cut:
                room.remove(endpoint)
                self._close_doc_member(room, endpoint)
                self.outboxes.put(endpoint.gateway, ("conn", endpoint.conn, kicked, 0, str(room_id)))
                self.outboxes.put(endpoint.gateway, ("drop", endpoint.conn, None, 0, str(room_id)))
            self._presence_changed(room)
            return len(cut)

    async def set_role(self, room_id: uuid.UUID, user_id: uuid.UUID) -> int:
        """A member's role changed in the database: their open sockets take it from there now.

        The role is read here, not passed in, so two quick changes applied in the other order
        than they were committed still leave the last committed one. Chat and playback
        permissions follow it, and so does every later frame of the member's document sockets (a
        demoted editor's next edit is refused; see ``SharedDocument.permission_changed`` for a
        promoted one). The room hears a ``role`` event, the member's own sockets included, when
        the member is online in it. Returns how many document sockets changed permission.
        """
        self._role_epoch += 1
        async with self._lock(room_id):
            room = self._rooms.get(room_id)
            if room is None:
                return 0
            access = await self._accesses.get((room_id, user_id))
            # An admin's or the owner's sockets are hosts and stay so (``Room.set_role``).
            role = access.role_of_member(user_id) if access else None
            if role is None or role is RoomRole.HOST:
                return 0  # banned: the kick that banned them cuts their sockets
            announce, docs = room.set_role(user_id, role)
            if announce:
                event = dumps({"type": "role", "room": str(room_id), "user": str(user_id), "role": role.value})
                for gateway in room.gateways:
                    self.outboxes.put(gateway, ("room", str(room_id), event, 0, None))
            doc = self._docs.get(room_id)
            for member in docs if doc is not None else ():
                endpoint = member.endpoint
                for frame in doc.permission_changed(_doc_conn(endpoint), can_edit_document(role)):
                    self.outboxes.put(endpoint.gateway, ("conn", endpoint.conn, frame, 0, None))
            return len(docs)

    async def online(self, room_id: uuid.UUID) -> list[dict[str, Any]]:
        room = self._rooms.get(room_id)
        return room.online() if room is not None else []

    # -- collaborative documents ---------------------------------------------------------------

    async def doc_open(self, endpoint: Endpoint, who: Principal, room_id: uuid.UUID) -> None:
        self.outboxes.require(endpoint.gateway)
        epoch = self._role_epoch
        role = await self._role(who, room_id)
        async with self._lock(room_id):
            role = await self._settle_role(who, room_id, role, epoch)
            room = await self._activate(room_id)
            doc = await self._document(room_id)
            room.doc_members[endpoint] = Member(endpoint=endpoint, user_id=who.user_id, role=role)
            room.doc_gateways[endpoint.gateway] += 1
            room.idle_since = None
            for frame in doc.greeting():
                self.outboxes.put(endpoint.gateway, ("conn", endpoint.conn, frame, 0, None))

    async def doc_frame(self, endpoint: Endpoint, room_id: uuid.UUID, frame: bytes) -> None:
        async with self._lock(room_id):
            room = self._rooms.get(room_id)
            member = room.doc_members.get(endpoint) if room is not None else None
            if room is None or member is None:
                raise NotJoined("document not open on this connection")
            doc = await self._document(room_id)
            reaction = doc.receive(_doc_conn(endpoint), frame, can_write=can_edit_document(member.role),
                                   read_only_reason=read_only_document_reason(member.role))
            if reaction.update is not None:
                count = await yjs_store.append_update(self._pool, room_id, reaction.update)
                if count >= self._settings.yjs_compact_every:
                    await yjs_store.compact(self._pool, room_id, doc.snapshot())
            for reply in reaction.reply:
                self.outboxes.put(endpoint.gateway, ("conn", endpoint.conn, reply, 0, None))
            for out in reaction.broadcast:
                for gateway in room.doc_gateways:
                    self.outboxes.put(gateway, ("doc", str(room_id), out, 0, endpoint.conn))

    async def doc_close(self, endpoint: Endpoint, room_id: uuid.UUID) -> None:
        async with self._lock(room_id):
            room = self._rooms.get(room_id)
            if room is not None:
                self._close_doc_member(room, endpoint)
                self._maybe_idle(room)

    async def document_json(self, room_id: uuid.UUID) -> dict[str, Any]:
        async with self._lock(room_id):
            await self._activate(room_id)
            return (await self._document(room_id)).to_json()

    # -- housekeeping ----------------------------------------------------------------------------

    async def run_housekeeping(self, stop: asyncio.Event) -> None:
        """Flush batched presence every ``presence_flush_s``; passivate idle rooms."""
        last_sweep = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.presence_flush_s)
            self._flush_presence()
            if time.monotonic() - last_sweep > min(10.0, self._settings.room_idle_s):
                last_sweep = time.monotonic()
                self._passivate_idle()

    def stats(self) -> dict[str, int]:
        return {"rooms": len(self._rooms), "documents": len(self._docs), "gateways": len(self.outboxes.gateways()),
                "sockets": sum(len(r.members) + len(r.doc_members) for r in self._rooms.values())}

    # -- internals -------------------------------------------------------------------------------

    async def _role(self, who: Principal, room_id: uuid.UUID) -> RoomRole:
        """The caller's role from the database (a kick or invite counts at once); raises if none.

        Looked up together with every other join of the same event-loop turn: a reconnect storm is
        one query per turn instead of one per socket queueing for the pool's connections."""
        access = await self._accesses.get((room_id, who.user_id))
        if access is None:
            raise NotFound("room not found")
        role = access.role_of(who)
        if role is None:
            raise NotFound("room not found") if access.visibility == "private" else Forbidden("banned from room")
        return role

    async def _settle_role(self, who: Principal, room_id: uuid.UUID, role: RoomRole, epoch: int) -> RoomRole:
        """``role``, unless a role change or kick was applied since it was looked up (at ``epoch``).

        Called under the room's lock. A change is applied after its commit, so a lookup made
        before the change may have read the old role; the join would then keep a role the host
        has already taken back from its sockets. Such a join looks again (rarely: the epoch
        counts this host's changes, and a lookup is a few milliseconds)."""
        return role if epoch == self._role_epoch else await self._role(who, room_id)

    def _lock(self, room_id: uuid.UUID) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = asyncio.Lock()
        return lock

    async def _activate(self, room_id: uuid.UUID) -> LiveRoom:
        room = self._rooms.get(room_id)
        if room is None:
            access = await repository.load_access(self._pool, room_id, None)
            history = deque(await repository.recent(self._pool, room_id, self._settings.room_history),
                            maxlen=self._settings.room_history)
            seq = await repository.last_seq(self._pool, room_id)
            transport = await repository.latest_transport(self._pool, room_id)
            room = self._rooms[room_id] = LiveRoom(access=access, seq=seq, history=history, transport=transport)
            metrics.ACTIVATIONS.inc(kind="room")
        return room

    async def _document(self, room_id: uuid.UUID) -> SharedDocument:
        doc = self._docs.get(room_id)
        if doc is None:
            doc = self._docs[room_id] = SharedDocument(await yjs_store.load_updates(self._pool, room_id))
        return doc

    def _member(self, endpoint: Endpoint, room_id: uuid.UUID) -> tuple[LiveRoom, Member]:
        room = self._rooms.get(room_id)
        member = room.members.get(endpoint) if room is not None else None
        if room is None or member is None:
            raise NotJoined("join the room first")
        return room, member

    async def _backlog(self, room: LiveRoom, since: int | None) -> tuple[list[tuple[int, str]], bool]:
        if since is None or since >= room.seq:
            return [], False
        limit = self._settings.room_backlog_max
        cached = room.backlog(since)
        if cached is None:
            cached = await repository.since(self._pool, room.room_id, since, limit)
        truncated = len(cached) > limit or (len(cached) == limit and cached[-1][0] < room.seq)
        return cached[:limit], truncated

    def _presence_changed(self, room: LiveRoom) -> None:
        self._dirty_presence.add(room.room_id)

    def _flush_presence(self, now: float | None = None) -> None:
        """Send each changed room's batched presence, once it is due: every ``presence_flush_s``, and
        in a large room no more often than its ``presence_fanout_per_s`` budget allows (a presence
        event goes to every member, so a join storm in a 1,000-member room would otherwise cost
        1,000 deliveries per flush). ``now`` is the monotonic clock (given by tests)."""
        now = time.monotonic() if now is None else now
        dirty, self._dirty_presence = self._dirty_presence, set()
        for room_id in dirty:
            room = self._rooms.get(room_id)
            if room is None:
                continue
            interval = max(self._settings.presence_flush_s, len(room.members) / self._settings.presence_fanout_per_s)
            if now - room.presence_sent_at < interval:
                self._dirty_presence.add(room_id)
                continue
            event = room.take_presence()
            if event is None:
                continue
            room.presence_sent_at = now
            payload = dumps(event)
            for gateway in room.gateways:
                self.outboxes.put(gateway, ("room", str(room_id), payload, 0, None))

    def _close_doc_member(self, room: LiveRoom, endpoint: Endpoint) -> None:
        if room.doc_members.pop(endpoint, None) is None:
            return
        room.doc_gateways[endpoint.gateway] -= 1
        if room.doc_gateways[endpoint.gateway] <= 0:
            del room.doc_gateways[endpoint.gateway]
        doc = self._docs.get(room.room_id)
        if doc is None:
            return
        for frame in doc.disconnect(_doc_conn(endpoint)):
            for gateway in room.doc_gateways:
                self.outboxes.put(gateway, ("doc", str(room.room_id), frame, 0, None))

    def _maybe_idle(self, room: LiveRoom) -> None:
        if room.is_empty():
            room.idle_since = time.monotonic()

    def _passivate_idle(self) -> None:
        horizon = time.monotonic() - self._settings.room_idle_s
        for room_id, room in list(self._rooms.items()):
            lock = self._locks.get(room_id)
            if room.is_empty() and room.idle_since is not None and room.idle_since < horizon \
                    and not room.writing and not (lock and lock.locked()):
                del self._rooms[room_id]
                self._docs.pop(room_id, None)
                self._locks.pop(room_id, None)

    def _gateway_lost(self, gateway: str) -> None:
        """A gateway's stream ended: its sockets are gone from every room (presence leaves follow)."""
        for room in self._rooms.values():
            for endpoint in [e for e in room.members if e.gateway == gateway]:
                room.remove(endpoint)
                self._presence_changed(room)
            for endpoint in [e for e in room.doc_members if e.gateway == gateway]:
                self._close_doc_member(room, endpoint)
            self._maybe_idle(room)


def _doc_conn(endpoint: Endpoint) -> str:
    return f"{endpoint.gateway}/{endpoint.conn}"


def _stamped(transport: dict[str, Any] | None) -> dict[str, Any] | None:
    """The transport with the server's current time, so a late joiner can extrapolate the position."""
    if transport is None:
        return None
    return {**transport, "now_ts": now_ms()}
