"""PostgreSQL for resumable uploads: the upload rows, their stored pieces and the PATCH lease.

Every change made while a PATCH holds an upload names the lease's token in its ``WHERE``: a request
whose lease was taken over (it stalled past ``resumable_lease_s``) changes nothing and is told so by
a ``False`` or ``None`` answer. Times are the database's (``now()``), one clock for every replica.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

_COLUMNS = """id, owner_id, track_id, upload_length, upload_offset, metadata, raw_metadata, expires_at,
              completed_at, lease_token, lease_until, now() AS now"""


async def insert(conn: asyncpg.Connection, *, upload_id: uuid.UUID, owner_id: uuid.UUID, track_id: uuid.UUID,
                 length: int, metadata: dict[str, Any], raw_metadata: str, expiry_s: int) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO resumable_uploads (id, owner_id, track_id, upload_length, metadata, raw_metadata, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
            RETURNING {_COLUMNS}""",
        upload_id, owner_id, track_id, length, metadata, raw_metadata, float(expiry_s),
    )


async def count_open(conn: asyncpg.Connection, owner_id: uuid.UUID) -> int:
    """Unfinished, unexpired uploads of one user."""
    return await conn.fetchval(
        """SELECT count(*) FROM resumable_uploads
           WHERE owner_id = $1 AND completed_at IS NULL AND expires_at > now()""",
        owner_id,
    )


async def fetch(conn: asyncpg.Connection | asyncpg.Pool, upload_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_COLUMNS} FROM resumable_uploads WHERE id = $1", upload_id)


async def acquire(pool: asyncpg.Pool, upload_id: uuid.UUID, owner_id: uuid.UUID, offset: int, token: uuid.UUID,
                  lease_s: float) -> asyncpg.Record | None:
    """Take the lease of an open upload at ``offset``; None when any condition fails (the caller says which)."""
    return await pool.fetchrow(
        f"""UPDATE resumable_uploads
            SET lease_token = $4, lease_until = now() + make_interval(secs => $5), updated_at = now()
            WHERE id = $1 AND owner_id = $2 AND upload_offset = $3 AND completed_at IS NULL
              AND expires_at > now() AND (lease_until IS NULL OR lease_until < now())
            RETURNING {_COLUMNS}""",
        upload_id, owner_id, offset, token, float(lease_s),
    )


async def renew(pool: asyncpg.Pool, upload_id: uuid.UUID, token: uuid.UUID, lease_s: float) -> bool:
    status = await pool.execute(
        """UPDATE resumable_uploads SET lease_until = now() + make_interval(secs => $3)
           WHERE id = $1 AND lease_token = $2""",
        upload_id, token, float(lease_s),
    )
    return status == "UPDATE 1"


async def release(pool: asyncpg.Pool, upload_id: uuid.UUID, token: uuid.UUID) -> None:
    await pool.execute(
        "UPDATE resumable_uploads SET lease_token = NULL, lease_until = NULL WHERE id = $1 AND lease_token = $2",
        upload_id, token,
    )


async def add_part(conn: asyncpg.Connection, upload_id: uuid.UUID, token: uuid.UUID, *, start: int, size: int,
                   key: str, expiry_s: int) -> asyncpg.Record | None:
    """Record a durable piece and move the offset past it, ending the lease; None if the lease was lost."""
    row = await conn.fetchrow(
        f"""UPDATE resumable_uploads
            SET upload_offset = upload_offset + $4, lease_token = NULL, lease_until = NULL,
                expires_at = now() + make_interval(secs => $5), updated_at = now()
            WHERE id = $1 AND lease_token = $2 AND upload_offset = $3
            RETURNING {_COLUMNS}""",
        upload_id, token, start, size, float(expiry_s),
    )
    if row is not None:
        await conn.execute(
            """INSERT INTO resumable_upload_parts (upload_id, start_offset, size, key) VALUES ($1, $2, $3, $4)
               ON CONFLICT (upload_id, start_offset) DO UPDATE SET size = EXCLUDED.size, key = EXCLUDED.key""",
            upload_id, start, size, key,
        )
    return row


async def part_keys(conn: asyncpg.Connection | asyncpg.Pool, upload_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT start_offset, size, key FROM resumable_upload_parts WHERE upload_id = $1 ORDER BY start_offset",
        upload_id,
    )


async def finish(conn: asyncpg.Connection, upload_id: uuid.UUID, token: uuid.UUID, *, start: int,
                 expiry_s: int) -> bool:
    """Mark the upload complete (its track is written in the same transaction); False if the lease was lost.

    The row stays until it expires so that HEAD can still tell a client where its track is."""
    status = await conn.execute(
        """UPDATE resumable_uploads
           SET upload_offset = upload_length, completed_at = now(), lease_token = NULL, lease_until = NULL,
               expires_at = now() + make_interval(secs => $4), updated_at = now()
           WHERE id = $1 AND lease_token = $2 AND upload_offset = $3""",
        upload_id, token, start, float(expiry_s),
    )
    if status != "UPDATE 1":
        return False
    await conn.execute("DELETE FROM resumable_upload_parts WHERE upload_id = $1", upload_id)
    return True


async def delete(conn: asyncpg.Connection | asyncpg.Pool, upload_id: uuid.UUID, *, owner_id: uuid.UUID | None = None,
                 token: uuid.UUID | None = None) -> asyncpg.Record | None:
    """Remove an upload row (its owner's, or the lease holder's when ``token`` is given); returns it."""
    return await conn.fetchrow(
        """DELETE FROM resumable_uploads
           WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2) AND ($3::uuid IS NULL OR lease_token = $3)
           RETURNING id, track_id, completed_at""",
        upload_id, owner_id, token,
    )


async def lock_expired(conn: asyncpg.Connection, now: datetime | None, limit: int) -> list[asyncpg.Record]:
    """Lock up to ``limit`` expired uploads that no PATCH holds (other sweepers skip them)."""
    return await conn.fetch(
        """SELECT id, track_id, completed_at FROM resumable_uploads
           WHERE expires_at < coalesce($1, now()) AND (lease_until IS NULL OR lease_until < coalesce($1, now()))
           ORDER BY expires_at LIMIT $2
           FOR UPDATE SKIP LOCKED""",
        now, limit,
    )


async def delete_many(conn: asyncpg.Connection, upload_ids: list[uuid.UUID]) -> None:
    await conn.execute("DELETE FROM resumable_uploads WHERE id = ANY($1::uuid[])", upload_ids)
