"""The asyncpg connection pool and the transaction helper every repository uses.

JSON and JSONB columns are decoded to Python objects on every connection, so repositories pass and
receive dicts, never strings.

A released connection goes back to the pool without asyncpg's reset statement (``SELECT
pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``): that statement is a PostgreSQL round
trip per checkout, as many as the queries of a read route. Nothing in the platform leaves session
state on a pooled connection: no statement changes a session setting (``SET``), advisory locks are
transaction-scoped (``pg_advisory_xact_lock``; migrations unlock theirs in a ``finally``),
listening for notifications runs on the outbox relay's own connection, and cursors live inside transactions;
``tests/test_db_pool.py`` keeps it so. asyncpg still rolls back a transaction left open and drops
listeners on release.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from verseflow.errors import InvalidInput
from verseflow.settings import Settings


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset after asyncpg's own (open transaction rolled back): no reset statement."""


async def create_pool(settings: Settings, *, min_size: int | None = None, max_size: int | None = None,
                      connection_class: type[asyncpg.Connection] = asyncpg.Connection) -> asyncpg.Pool:
    """Open a pool on ``settings.database_url``; the caller closes it. ``connection_class``: a subclass of
    asyncpg's (a benchmark's that counts round trips)."""
    database_url, _ = settings.require_urls()
    return await asyncpg.create_pool(
        database_url,
        min_size=min_size or settings.db_pool_min,
        max_size=max_size or settings.db_pool_max,
        init=_init_connection,
        command_timeout=30,
        connection_class=connection_class,
        reset=_keep_session,
    )


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside one transaction: state changes and their outbox events commit together."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


def like_literal(text: str) -> str:
    """``text`` with LIKE's wildcards and escape character taken literally (a search for "50%" is not a
    pattern); the caller adds its own ``%``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def update_row(conn: asyncpg.Connection, table: str, row_id: object, changes: dict[str, Any]) -> asyncpg.Record:
    """``UPDATE table SET ... WHERE id = row_id RETURNING *``.

    Column names come from the caller's validated pydantic model, never from raw client keys.
    """
    if not changes:
        raise InvalidInput("nothing to change")
    assignments = ", ".join(f"{column} = ${i + 2}" for i, column in enumerate(changes))
    return await conn.fetchrow(
        f"UPDATE {table} SET {assignments}, updated_at = now() WHERE id = $1 RETURNING *", row_id, *changes.values()
    )
