"""Retention of refresh tokens: a login is deleted once it is over, and only then.

Every refresh adds a row (rotation keeps the old one, marked ``rotated_at``), so ``refresh_tokens``
grows with use. A row cannot go as soon as it expires: a rotated token is kept so that presenting it
again (a thief, or the rightful client after a thief used it first) revokes its whole family, and a
family lives as long as its newest token. So pruning goes by family: all the rows of a login are
deleted together once none of them is usable, that is once every one expired or was revoked more
than ``refresh_token_retention_s`` (7 days) ago. A live login keeps all its rows, rotated ones
included, and a live token is never touched.

Batches as in ``verseflow.events.retention``: at most ``prune_batch_size`` rows per statement,
picked with ``FOR UPDATE SKIP LOCKED``, so a refresh holding a row is never waited for. No refresh
can add a row to a family being pruned: its tokens are all expired or revoked, which refresh refuses.
"""

from __future__ import annotations

import asyncpg

from verseflow.events.retention import delete_in_batches
from verseflow.settings import Settings

_OVER_BEFORE = """
DELETE FROM refresh_tokens WHERE id IN (
    SELECT t.id FROM refresh_tokens t
    WHERE (t.expires_at < now() - $2 * interval '1 second' OR t.revoked_at < now() - $2 * interval '1 second')
      AND NOT EXISTS (
          SELECT 1 FROM refresh_tokens usable
          WHERE usable.family_id = t.family_id AND usable.revoked_at IS NULL
            AND usable.expires_at >= now() - $2 * interval '1 second')
    LIMIT $1 FOR UPDATE OF t SKIP LOCKED)"""


async def prune_refresh_tokens(pool: asyncpg.Pool, settings: Settings) -> int:
    """Delete the rows of logins over for longer than the retention; returns how many went."""
    return await delete_in_batches(pool, _OVER_BEFORE, float(settings.refresh_token_retention_s),
                                   batch=settings.prune_batch_size)
