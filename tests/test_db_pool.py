"""The connection pool: a released connection costs no reset round trip, yet carries nothing over.

``verseflow/db.py`` skips asyncpg's reset statement on release because nothing in the platform leaves
session state on a pooled connection; the last test keeps the code that way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from verseflow.db import create_pool

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = ("accounts", "actors", "audio", "billing", "catalog", "ml", "rooms", "serve_deployments", "subsonic",
            "verseflow")


class _Counting(asyncpg.Connection):
    """Records every statement sent through ``execute`` (asyncpg's reset statement goes through it)."""

    sent: list[str] = []

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> str:
        _Counting.sent.append(query)
        return await super().execute(query, *args, **kwargs)


async def test_release_sends_no_reset_statement(settings):
    pool = await create_pool(settings, min_size=1, max_size=1, connection_class=_Counting)
    try:
        _Counting.sent.clear()
        for _ in range(3):
            async with pool.acquire() as conn:
                await conn.execute("SELECT 1")
        assert _Counting.sent == ["SELECT 1"] * 3
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(settings):
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TEMP TABLE pool_probe (x int)")
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO pool_probe VALUES (1)")
        async with pool.acquire() as again:  # one connection in the pool: the same one
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT count(*) FROM pool_probe") == 0
    finally:
        await pool.close()


_SESSION_STATE = [
    (re.compile(r"""["'(]\s*SET\s+(?!LOCAL\b)\w"""), "a session setting (SET)", ()),
    (re.compile(r"set_config\([^)]*\bfalse\b", re.IGNORECASE), "a session setting (set_config, not local)", ()),
    (re.compile(r"\bpg_advisory_lock\b|\bpg_try_advisory_lock\b"), "a session advisory lock",
     ("verseflow/migrations.py",)),
    (re.compile(r"\bLISTEN\b|add_listener\("), "LISTEN", ("verseflow/events/relay.py",)),
]


@pytest.mark.parametrize("pattern,what,allowed", _SESSION_STATE, ids=[w for _, w, _ in _SESSION_STATE])
def test_platform_code_leaves_no_session_state_on_pooled_connections(pattern, what, allowed):
    """Where it is allowed, the connection is not a pooled one (relay) or the state is undone in a
    ``finally`` (migrations)."""
    found = []
    for package in PLATFORM:
        for path in sorted((ROOT / package).rglob("*")):
            if path.suffix not in (".py", ".sql") or str(path.relative_to(ROOT)) in allowed:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, f"{what} on a pooled connection outlives its checkout:\n" + "\n".join(found)
