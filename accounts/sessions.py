"""Event handlers that end a user's live access when the account stops being usable.

``user.registration_failed`` (the registration saga's compensation disabled the account) revokes
every access token already issued, so a half-registered user cannot keep using the API for the
rest of a token's lifetime. The handler is idempotent: it only moves a cut-off time forward.
"""

from __future__ import annotations

import uuid

import asyncpg
from redis.asyncio import Redis

from accounts.service import revoke_access_tokens
from verseflow.events.consumer import Handlers
from verseflow.events.outbox import Event
from verseflow.settings import Settings


def handlers(redis: Redis, settings: Settings) -> Handlers:
    async def on_account_disabled(_: asyncpg.Connection, event: Event) -> None:
        await revoke_access_tokens(redis, settings, uuid.UUID(event.payload["user_id"]))

    return {"user.registration_failed": [on_account_disabled]}
