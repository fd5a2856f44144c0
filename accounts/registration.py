"""The registration saga: account → profile → welcome notification, undone if a step fails for good.

``accounts.service.register`` creates the account and records ``user.registered``; the handler here
runs the rest of the flow as a persisted saga (``verseflow.events.saga``), so a crashed worker
resumes it and a failing step is compensated: what the saga created is removed, the account is
disabled and ``user.registration_failed`` is emitted, leaving no half-registered user behind.

The steps are plain functions over the step's connection and the saga's data; ``registration_saga``
takes them as arguments so a test (or another product) can substitute one.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import asyncpg

from verseflow.events.consumer import Handlers
from verseflow.events.outbox import Event, emit
from verseflow.events.saga import Saga, Step, StepFunction, run_saga

SAGA_KIND = "registration"


async def confirm_account(conn: asyncpg.Connection, data: dict[str, Any]) -> None:
    """Step 1 happened in ``register``; the saga only checks the account is still there and active."""
    if not await conn.fetchval("SELECT status = 'active' FROM users WHERE id = $1", _user_id(data)):
        raise LookupError("the account is gone or disabled")


async def disable_account(conn: asyncpg.Connection, data: dict[str, Any]) -> None:
    user_id = _user_id(data)
    await conn.execute("UPDATE users SET status = 'disabled', updated_at = now() WHERE id = $1", user_id)
    await emit(conn, "user.registration_failed", user_id, user_id=user_id)


async def create_profile(conn: asyncpg.Connection, data: dict[str, Any]) -> None:
    """An empty profile; one the user already made (``update_profile`` may run first) is kept as it is."""
    created = await conn.fetchval(
        "INSERT INTO profiles (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING RETURNING true",
        _user_id(data),
    )
    data["profile_created"] = bool(created)


async def remove_profile(conn: asyncpg.Connection, data: dict[str, Any]) -> None:
    if data.get("profile_created"):
        await conn.execute("DELETE FROM profiles WHERE user_id = $1", _user_id(data))


async def create_welcome_notification(conn: asyncpg.Connection, data: dict[str, Any]) -> None:
    """The welcome notification, and ``notification.created`` for the realtime push to the user's sessions."""
    user_id = _user_id(data)
    payload = {"display_name": data.get("display_name", "")}
    notification_id = await conn.fetchval(
        """INSERT INTO notifications (id, user_id, kind, payload) VALUES ($1, $2, 'welcome', $3)
           ON CONFLICT (user_id, kind, payload) DO NOTHING RETURNING id""",
        uuid.uuid4(), user_id, payload,
    )
    if notification_id is not None:
        data["notification_id"] = str(notification_id)
        await emit(conn, "notification.created", user_id, notification_id=notification_id, user_id=user_id,
                   kind="welcome", payload=payload)


async def remove_welcome_notification(conn: asyncpg.Connection, data: dict[str, Any]) -> None:
    if "notification_id" in data:
        await conn.execute("DELETE FROM notifications WHERE id = $1", uuid.UUID(data["notification_id"]))


def registration_saga(
    *, profile: StepFunction = create_profile, notification: StepFunction = create_welcome_notification,
) -> Saga:
    return Saga(kind=SAGA_KIND, steps=(
        Step("account", confirm_account, disable_account),
        Step("profile", profile, remove_profile),
        Step("welcome notification", notification, remove_welcome_notification),
    ))


async def on_user_registered(
    conn: asyncpg.Connection, event: Event, *, pool: asyncpg.Pool, saga: Saga,
) -> None:
    """Run (or resume) the saga for the new user.

    The saga commits each step on its own connection from ``pool``; ``conn`` is the consumer's
    idempotency transaction, which commits once the saga has ended. A crash before that redelivers
    the event, and the saga resumes at the step it had reached.
    """
    await run_saga(pool, saga, subject_id=event.payload["user_id"], data=event.payload)


def handlers(pool: asyncpg.Pool, saga: Saga | None = None) -> Handlers:
    """The accounts handlers with their dependencies bound, for a consumer group to run."""
    bound = functools.partial(on_user_registered, pool=pool, saga=saga or registration_saga())
    return {"user.registered": [bound]}


def _user_id(data: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(data["user_id"])
