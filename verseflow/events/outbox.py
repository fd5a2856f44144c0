"""Recording domain events in the outbox, inside the caller's transaction.

The state change and its event commit or roll back together; the relay publishes committed rows
to Redis Streams afterwards. Nothing here talks to Redis.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Event:
    """One thing that happened. ``type`` is dotted (``user.registered``, ``playlist.updated``)."""

    type: str
    payload: dict[str, Any]
    aggregate_id: str | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_fields(self) -> dict[str, str]:
        """The Redis Stream entry: flat string fields."""
        return {
            "id": str(self.id),
            "type": self.type,
            "aggregate_id": self.aggregate_id or "",
            "occurred_at": self.occurred_at.isoformat(),
            "payload": json.dumps(self.payload, default=str),
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Event:
        return cls(
            type=fields["type"],
            payload=json.loads(fields["payload"]),
            aggregate_id=fields.get("aggregate_id") or None,
            id=uuid.UUID(fields["id"]),
            occurred_at=datetime.fromisoformat(fields["occurred_at"]),
        )


def insert_sql(first: int = 1, *, when: str | None = None) -> str:
    """The outbox row's INSERT, its placeholders numbered from ``$first`` and the row written only ``when`` that
    SQL condition holds: for a caller that records an event in the same statement as its change (as a CTE
    of it, one round trip instead of two)."""
    placeholders = ", ".join(f"${first + i}" for i in range(5))
    columns = "INSERT INTO outbox (id, type, aggregate_id, payload, created_at)"
    return f"{columns} VALUES ({placeholders})" if when is None else f"{columns} SELECT {placeholders} WHERE {when}"


def insert_args(event: Event) -> tuple[Any, ...]:
    """The values of ``insert_sql``'s placeholders."""
    return event.id, event.type, event.aggregate_id, event.payload, event.occurred_at


async def record(conn: asyncpg.Connection, event: Event) -> None:
    """Append ``event`` to the outbox; call inside the transaction that made the change."""
    await conn.execute(insert_sql(), *insert_args(event))


def build(type: str, aggregate_id: object, **payload: Any) -> Event:
    """An event as services describe it: its type, what it is about, and JSON-able details."""
    return Event(type=type, payload={k: _jsonable(v) for k, v in payload.items()}, aggregate_id=str(aggregate_id))


async def emit(conn: asyncpg.Connection, type: str, aggregate_id: object, **payload: Any) -> Event:
    """Shorthand used by services: build and record an event in one call."""
    event = build(type, aggregate_id, **payload)
    await record(conn, event)
    return event


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID | datetime):
        return str(value)
    return value
