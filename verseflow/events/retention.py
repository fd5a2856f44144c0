"""Retention of the event tables: published outbox rows and consumers' deduplication records.

Both grow with every change, so the event worker prunes them every ``prune_interval_s``:

- ``outbox``: a row is kept ``outbox_retention_s`` (7 days) after it was *published*; types listed in
  ``outbox_retention_by_type_s`` are kept for their own time instead (``track.progress``, one per
  progress report of a transcoding job: 1 hour). An unpublished row is never pruned, however old: it
  is an event Redis has not received yet, and the relay still owes it to the stream.
- ``processed_events``: a row is kept ``processed_events_retention_s`` (7 days) after its event was
  handled. That is the deduplication window. Redeliveries come within seconds (a relay dying between
  XADD and its commit) or ``consumer_reclaim_idle_ms`` (a consumer dying between its commit and XACK)
  while the worker runs; an entry reclaimed after the window (the worker was down longer than that)
  is dead-lettered by the consumer instead of handled (``consumer.Consumer._reclaim``), so pruning
  never turns a redelivery into a second handling.

How, so that pruning never blocks writers: each statement deletes at most ``prune_batch_size`` rows,
picked with ``FOR UPDATE SKIP LOCKED`` and deleted in the same statement, in a transaction of its own.
A row a writer holds is skipped until a later run, the prune never waits on a lock, and no writer
touches the rows it deletes (the relay only updates unpublished rows; a consumer only inserts new
records). Each selection is served by an index of ``0010_retention.sql``, so a batch reads only
what it deletes. The cut-offs use the database's clock, which also stamped the rows.
"""

from __future__ import annotations

import asyncpg

from verseflow.settings import Settings

# Consumers dead-letter redeliveries this much before the window closes: the stream's entry ids
# carry Redis's clock, the records PostgreSQL's, and the two may disagree by a little.
CLOCK_MARGIN_S = 300

_PUBLISHED_BEFORE = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox
    WHERE published_at < now() - $2 * interval '1 second' AND type <> ALL($3::text[])
    LIMIT $1 FOR UPDATE SKIP LOCKED)"""

_PUBLISHED_OF_TYPE_BEFORE = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox
    WHERE type = $3 AND published_at < now() - $2 * interval '1 second'
    LIMIT $1 FOR UPDATE SKIP LOCKED)"""

_PROCESSED_BEFORE = """
DELETE FROM processed_events WHERE (consumer, event_id) IN (
    SELECT consumer, event_id FROM processed_events
    WHERE processed_at < now() - $2 * interval '1 second'
    LIMIT $1 FOR UPDATE SKIP LOCKED)"""


async def delete_in_batches(pool: asyncpg.Pool, sql: str, *args: object, batch: int) -> int:
    """Run ``sql`` (a DELETE of at most ``$1`` rows; ``args`` are ``$2``...) until a run deletes fewer
    than ``batch``; returns how many rows went. Each run is its own transaction, so locks are held
    for one batch only, and the loop yields to the event loop between batches."""
    total = 0
    while True:
        status = await pool.execute(sql, batch, *args)  # "DELETE <count>"
        deleted = int(status.rsplit(" ", 1)[-1])
        total += deleted
        if deleted < batch:
            return total


async def prune_outbox(pool: asyncpg.Pool, settings: Settings) -> int:
    """Delete outbox rows published longer ago than their retention; never an unpublished one."""
    own_times = settings.outbox_retention_by_type_s
    batch = settings.prune_batch_size
    deleted = await delete_in_batches(pool, _PUBLISHED_BEFORE, float(settings.outbox_retention_s),
                                      sorted(own_times), batch=batch)
    for event_type, seconds in sorted(own_times.items()):
        deleted += await delete_in_batches(pool, _PUBLISHED_OF_TYPE_BEFORE, float(seconds), event_type, batch=batch)
    return deleted


async def prune_processed_events(pool: asyncpg.Pool, settings: Settings) -> int:
    """Delete deduplication records older than the deduplication window."""
    return await delete_in_batches(pool, _PROCESSED_BEFORE, float(settings.processed_events_retention_s),
                                   batch=settings.prune_batch_size)


def dedup_horizon_ms(settings: Settings, now_s: float) -> int:
    """Stream entries older than this (a Unix time in ms, as in entry ids) may have lost their
    deduplication record: ``now_s`` less the window, less the clock margin."""
    return int((now_s - settings.processed_events_retention_s + CLOCK_MARGIN_S) * 1000)
