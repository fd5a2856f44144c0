"""Migrations: idempotent, recorded with checksums, serialized by the advisory lock."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from verseflow import migrations


@pytest.fixture
async def scratch_db(settings):
    """An empty database of its own, so migrations start from nothing."""
    name = f"vf_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    url = settings.database_url.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_applies_all_then_nothing(scratch_db):
    conn = await asyncpg.connect(scratch_db)
    try:
        first = await migrations.migrate(conn)
        assert [m.version for m in first] == [m.version for m in migrations.discover()]
        assert await migrations.migrate(conn) == []
        recorded = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["checksum"]) for r in recorded] == [(m.version, m.checksum) for m in first]
    finally:
        await conn.close()


async def test_concurrent_runners_apply_each_migration_once(scratch_db):
    conns = [await asyncpg.connect(scratch_db) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrations.migrate(c) for c in conns))
        applied = sorted(m.version for result in results for m in result)
        assert applied == [m.version for m in migrations.discover()]
    finally:
        for conn in conns:
            await conn.close()


async def test_changed_migration_is_refused(scratch_db):
    conn = await asyncpg.connect(scratch_db)
    try:
        await migrations.migrate(conn)
        first = migrations.discover()[0]
        tampered = migrations.Migration(first.version, first.name, first.sql + "\n-- edited")
        with pytest.raises(migrations.MigrationError, match="changed after it was applied"):
            await migrations.migrate(conn, [tampered])
    finally:
        await conn.close()


async def test_failed_migration_rolls_back_and_is_not_recorded(scratch_db):
    conn = await asyncpg.connect(scratch_db)
    try:
        broken = migrations.Migration(9001, "broken", "CREATE TABLE half_done (id int); SELECT 1/0;")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrations.migrate(conn, [broken])
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 9001") == 0
    finally:
        await conn.close()
