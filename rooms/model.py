"""Rooms as plain objects: who may do what, and the live state a room host keeps in memory.

A :class:`LiveRoom` is the virtual actor's state: the last sequence number, a bounded history for
resume, who is online through which gateway, the playback transport and pending presence changes.
It does no I/O; :mod:`rooms.host` persists and fans out around it.
"""

from __future__ import annotations

import enum
import itertools
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from accounts.model import Principal


class RoomRole(enum.StrEnum):
    HOST = "host"
    COLLABORATOR = "collaborator"
    LISTENER = "listener"
    BANNED = "banned"


@dataclass(frozen=True)
class RoomAccess:
    """What authorization in a room depends on: visibility, owner and the caller's explicit role."""

    room_id: uuid.UUID
    owner_id: uuid.UUID
    visibility: str
    explicit_role: RoomRole | None

    def role_of(self, who: Principal) -> RoomRole | None:
        """The caller's role, or None when the caller may not enter at all."""
        if who.is_admin:
            return RoomRole.HOST
        return self.role_of_member(who.user_id)

    def role_of_member(self, user_id: uuid.UUID) -> RoomRole | None:
        """The role the room itself gives ``user_id`` (owner, explicit role, visibility), whatever
        platform role they hold: what a role change in the room changes."""
        if user_id == self.owner_id:
            return RoomRole.HOST
        if self.explicit_role is RoomRole.BANNED:
            return None
        if self.explicit_role is not None:
            return self.explicit_role
        return RoomRole.LISTENER if self.visibility == "public" else None


def can_control_playback(role: RoomRole) -> bool:
    return role is RoomRole.HOST


def can_edit_document(role: RoomRole) -> bool:
    return role in (RoomRole.HOST, RoomRole.COLLABORATOR)


def read_only_document_reason(role: RoomRole) -> str:
    """What a stock Yjs client is told (y-protocols' permission-denied) when ``role`` may not edit."""
    return (f"read-only: a room {role.value} cannot edit the room's document (its host and collaborators can); "
            "edits from this connection are not saved or shared")


def can_manage_members(role: RoomRole) -> bool:
    return role is RoomRole.HOST


@dataclass(frozen=True)
class Endpoint:
    """One socket: the gateway holding it and the connection's id there."""

    gateway: str
    conn: str


@dataclass
class Member:
    endpoint: Endpoint
    user_id: uuid.UUID
    role: RoomRole


@dataclass
class LiveRoom:
    """An activated room. ``seq`` is the last persisted message; ``history`` holds (seq, json) pairs."""

    access: RoomAccess
    seq: int
    history: deque[tuple[int, str]]
    transport: dict[str, Any] | None = None
    members: dict[Endpoint, Member] = field(default_factory=dict)
    gateways: Counter[str] = field(default_factory=Counter)
    # Derived from ``members`` and kept in step by add/remove, so that presence and `joined` cost
    # O(1) per socket instead of a scan of a 1,000-member room on every join.
    devices: Counter[uuid.UUID] = field(default_factory=Counter)
    roles: dict[uuid.UUID, RoomRole] = field(default_factory=dict)
    joins: dict[uuid.UUID, str] = field(default_factory=dict)
    leaves: set[uuid.UUID] = field(default_factory=set)
    doc_members: dict[Endpoint, Member] = field(default_factory=dict)
    doc_gateways: Counter[str] = field(default_factory=Counter)
    idle_since: float | None = None
    # Messages waiting for the room's next log write, and whether a write is under way
    # (rooms.log_writer: one writer per room, a batch per write).
    pending: list[Any] = field(default_factory=list)
    writing: bool = False
    presence_sent_at: float = float("-inf")  # monotonic time of the last presence event
    hosts: set[uuid.UUID] = field(default_factory=set)  # online users with the host role

    @property
    def room_id(self) -> uuid.UUID:
        return self.access.room_id

    def record(self, seq: int, payload: str) -> None:
        """Remember a persisted message for resume; the deque drops the oldest."""
        self.seq = seq
        self.history.append((seq, payload))

    def backlog(self, since: int) -> list[tuple[int, str]] | None:
        """Messages after ``since`` from memory, or None if memory no longer reaches back that far."""
        if since >= self.seq:
            return []
        if not self.history or self.history[0][0] > since + 1:
            return None
        return [(seq, payload) for seq, payload in self.history if seq > since]

    def devices_of(self, user_id: uuid.UUID) -> int:
        return self.devices.get(user_id, 0)

    def add(self, member: Member) -> bool:
        """Add a socket; True when this is the user's first device here (a presence join)."""
        first = self.devices_of(member.user_id) == 0
        if member.endpoint not in self.members:
            self.gateways[member.endpoint.gateway] += 1
            self.devices[member.user_id] += 1
        self.members[member.endpoint] = member
        self.roles[member.user_id] = member.role
        if member.role is RoomRole.HOST:
            self.hosts.add(member.user_id)
        else:
            self.hosts.discard(member.user_id)
        if first:
            self.leaves.discard(member.user_id)
            self.joins[member.user_id] = member.role.value
        return first

    def remove(self, endpoint: Endpoint) -> Member | None:
        """Remove a socket; records a presence leave when it was the user's last device."""
        member = self.members.pop(endpoint, None)
        if member is None:
            return None
        self.gateways[endpoint.gateway] -= 1
        if self.gateways[endpoint.gateway] <= 0:
            del self.gateways[endpoint.gateway]
        self.devices[member.user_id] -= 1
        if self.devices[member.user_id] <= 0:
            del self.devices[member.user_id]
            del self.roles[member.user_id]
            self.hosts.discard(member.user_id)
            if self.joins.pop(member.user_id, None) is None:
                self.leaves.add(member.user_id)
        return member

    def set_role(self, user_id: uuid.UUID, role: RoomRole) -> tuple[bool, list[Member]]:
        """Give a user's open sockets a new role (the database already holds it).

        Returns whether the user's role among the online members changed (so the room hears of it)
        and the user's document sockets whose role changed. A host (the owner, or an admin) stays
        host: an explicit role does not bind them.
        """
        for member in self.members.values():
            if member.user_id == user_id and member.role is not RoomRole.HOST:
                member.role = role
        docs = [m for m in self.doc_members.values()
                if m.user_id == user_id and m.role not in (RoomRole.HOST, role)]
        for member in docs:
            member.role = role
        before = self.roles.get(user_id)
        if before is None or before in (RoomRole.HOST, role):
            return False, docs
        self.roles[user_id] = role
        if user_id in self.joins:  # a join not announced yet is announced with the new role
            self.joins[user_id] = role.value
        return True, docs

    def take_presence(self) -> dict[str, Any] | None:
        """The batched presence change since the last call, or None if nothing changed."""
        if not self.joins and not self.leaves:
            return None
        event = {
            "type": "presence",
            "room": str(self.room_id),
            "joins": [{"user": str(u), "role": r} for u, r in self.joins.items()],
            "leaves": [str(u) for u in self.leaves],
            "online": len(self.devices),
        }
        self.joins.clear()
        self.leaves.clear()
        return event

    def online(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Distinct online users with role and device count (host first, then by user id)."""
        hosts = sorted(self.hosts)
        others = (u for u in self.devices if u not in self.hosts)
        chosen = [*hosts, *others] if limit is None else [*hosts, *itertools.islice(others, max(0, limit - len(hosts)))]
        return [{"user": str(u), "role": self.roles[u].value, "devices": self.devices[u]} for u in chosen]

    def is_empty(self) -> bool:
        return not self.members and not self.doc_members
