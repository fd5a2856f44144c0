"""Retention: old published outbox rows, deduplication records and finished logins are pruned, in
batches that skip what writers hold; unpublished events, records within the deduplication window and
live logins never are.

The database is shared by the run, so rows are made with timestamps in the past (the database's
clock decides what is old, as in production) and assertions look at this test's own rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest

from accounts.retention import prune_refresh_tokens
from tests.test_events import eventually
from verseflow.db import transaction
from verseflow.events.consumer import Consumer, dead_letter_key
from verseflow.events.outbox import Event, emit
from verseflow.events.relay import OutboxRelay, stream_key
from verseflow.events.retention import prune_outbox, prune_processed_events
from verseflow.security import refresh_token_hash as hash_of

DAY = 24 * 3600


@pytest.fixture
def isolated(settings):
    """Settings with a stream of this test's own, short blocking reads and a short reclaim idle time."""
    return settings.model_copy(update={
        "events_stream": f"retention-{uuid.uuid4().hex[:8]}", "consumer_block_ms": 10,
        "consumer_reclaim_idle_ms": 100,
    })


async def outbox_row(pool, *, type: str = "test.retention", age_s: float, published_age_s: float | None) -> uuid.UUID:
    """An outbox row created ``age_s`` ago and published ``published_age_s`` ago (None: not yet)."""
    row_id = uuid.uuid4()
    await pool.execute(
        """INSERT INTO outbox (id, type, aggregate_id, payload, created_at, published_at)
           VALUES ($1, $2, 'retention', '{}', now() - $3 * interval '1 second',
                   now() - $4 * interval '1 second')""",
        row_id, type, float(age_s), None if published_age_s is None else float(published_age_s))
    return row_id


async def remaining(pool, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    return {r["id"] for r in await pool.fetch("SELECT id FROM outbox WHERE id = ANY($1)", ids)}


@contextlib.asynccontextmanager
async def cleaned_up(pool, ids: list[uuid.UUID]):
    """Remove this test's unpublished rows afterwards, so no later relay publishes them."""
    try:
        yield
    finally:
        await pool.execute("DELETE FROM outbox WHERE id = ANY($1)", ids)


async def test_outbox_keeps_unpublished_and_recent_rows_and_drops_old_published_ones(pool, settings):
    assert settings.outbox_retention_s == 7 * DAY and settings.outbox_retention_by_type_s == {"track.progress": 3600}
    old_published = await outbox_row(pool, age_s=9 * DAY, published_age_s=8 * DAY)
    recent_published = await outbox_row(pool, age_s=6 * DAY, published_age_s=6 * DAY)
    old_unpublished = await outbox_row(pool, age_s=60 * DAY, published_age_s=None)
    old_unpublished_progress = await outbox_row(pool, type="track.progress", age_s=60 * DAY, published_age_s=None)
    old_progress = await outbox_row(pool, type="track.progress", age_s=2 * 3600, published_age_s=2 * 3600)
    young_progress = await outbox_row(pool, type="track.progress", age_s=600, published_age_s=600)
    same_age_other_type = await outbox_row(pool, age_s=2 * 3600, published_age_s=2 * 3600)
    mine = [old_published, recent_published, old_unpublished, old_unpublished_progress, old_progress,
            young_progress, same_age_other_type]

    async with cleaned_up(pool, mine):
        assert await prune_outbox(pool, settings) >= 2
        assert await remaining(pool, mine) == {recent_published, old_unpublished, old_unpublished_progress,
                                               young_progress, same_age_other_type}


async def test_the_unpublished_row_is_still_published_after_a_prune(pool, redis, isolated):
    async with transaction(pool) as conn:
        event = await emit(conn, "test.retention.pending", "agg")
    await pool.execute("UPDATE outbox SET created_at = now() - interval '30 days' WHERE id = $1", event.id)

    await prune_outbox(pool, isolated)

    await OutboxRelay(pool, redis, isolated).publish_pending()
    published = [Event.from_fields(fields).id for _, fields in await redis.xrange(stream_key(isolated))]
    assert event.id in published


async def test_outbox_is_pruned_in_batches(pool, settings):
    old = [await outbox_row(pool, age_s=10 * DAY, published_age_s=9 * DAY) for _ in range(7)]
    assert await prune_outbox(pool, settings.model_copy(update={"prune_batch_size": 2})) >= 7
    assert await remaining(pool, old) == set()


async def test_pruning_skips_rows_a_writer_holds_and_does_not_wait(pool, settings):
    held, free = [await outbox_row(pool, age_s=10 * DAY, published_age_s=9 * DAY) for _ in range(2)]
    async with pool.acquire() as writer, writer.transaction():
        await writer.execute("SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE", held)
        # Would hang on the held row if the prune waited for writers; the bound only stops a broken run.
        await asyncio.wait_for(prune_outbox(pool, settings), timeout=60)
        assert await remaining(pool, [held, free]) == {held}
    await prune_outbox(pool, settings)  # the next run takes it
    assert await remaining(pool, [held, free]) == set()


async def test_processed_events_older_than_the_window_go(pool, settings):
    group = f"retention-{uuid.uuid4().hex[:8]}"
    ages = {"old": 8 * DAY, "inside": 6 * DAY, "new": 0}
    ids = {name: uuid.uuid4() for name in ages}
    for name, age in ages.items():
        await pool.execute(
            "INSERT INTO processed_events (consumer, event_id, processed_at) "
            "VALUES ($1, $2, now() - $3 * interval '1 second')", group, ids[name], float(age))

    assert await prune_processed_events(pool, settings) >= 1

    kept = {r["event_id"] for r in await pool.fetch("SELECT event_id FROM processed_events WHERE consumer = $1",
                                                    group)}
    assert kept == {ids["inside"], ids["new"]}


async def test_a_redelivery_inside_the_window_is_still_deduplicated_after_a_prune(pool, redis, isolated):
    calls: list[uuid.UUID] = []

    async def count(conn, event: Event) -> None:
        calls.append(event.id)

    consumer = Consumer(pool, redis, isolated, group="retained", handlers={"test.retained": [count]})
    event = Event(type="test.retained", payload={}, aggregate_id="agg")
    await redis.xadd(stream_key(isolated), event.to_fields())
    await consumer.process_once()
    assert calls == [event.id]
    await pool.execute("UPDATE processed_events SET processed_at = now() - interval '6 days' "
                       "WHERE consumer = 'retained' AND event_id = $1", event.id)

    await prune_processed_events(pool, isolated)
    await redis.xadd(stream_key(isolated), event.to_fields())  # the relay publishing it again
    await consumer.process_once()

    assert calls == [event.id]


async def test_an_entry_reclaimed_after_the_window_is_dead_lettered_not_handled_again(pool, redis, isolated):
    """A consumer died between its commit and XACK, and nobody ran for longer than the window: the
    record may be gone, so the entry goes to the dead letters rather than being handled twice."""
    handled: list[Event] = []

    async def record(conn, event: Event) -> None:
        handled.append(event)

    survivor = Consumer(pool, redis, isolated, group="late", handlers={"test.late": [record]})
    await survivor.process_once()  # creates the group on the still empty stream
    stream, week_ago_ms = stream_key(isolated), int((time.time() - 8 * DAY) * 1000)
    stale = Event(type="test.late", payload={}, aggregate_id="agg")
    await redis.xadd(stream, stale.to_fields(), id=f"{week_ago_ms}-0")
    taken = await redis.xreadgroup("late", "died-long-ago", {stream: ">"})
    assert [entry_id for entry_id, _ in taken[0][1]] == [f"{week_ago_ms}-0"]

    async def dead_lettered() -> bool:
        await survivor.process_once()
        return await redis.xlen(dead_letter_key(isolated)) > 0

    assert await eventually(dead_lettered)
    assert handled == []
    [(_, fields)] = await redis.xrange(dead_letter_key(isolated))
    assert fields["dead_letter_reason"].startswith("reclaimed after the deduplication window")
    assert (await redis.xpending(stream, "late"))["pending"] == 0

    # Never delivered, an old entry is simply handled: a group that fell behind loses nothing.
    unread = Event(type="test.late", payload={}, aggregate_id="agg")
    await redis.xadd(stream, unread.to_fields(), id=f"{week_ago_ms + 1}-0")
    await survivor.process_once()
    assert handled == [unread]


async def family_rows(pool, family_id: uuid.UUID) -> int:
    return await pool.fetchval("SELECT count(*) FROM refresh_tokens WHERE family_id = $1", family_id)


async def family_of(pool, refresh_token: str) -> uuid.UUID:
    return await pool.fetchval("SELECT family_id FROM refresh_tokens WHERE token_hash = $1", hash_of(refresh_token))


async def refresh(client, token: str):
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


async def test_live_logins_keep_every_token_and_finished_ones_go(api, client, pool, settings):
    live, expired, revoked, revoked_lately = [await api.user() for _ in range(4)]
    families = {name: await family_of(pool, user["refresh_token"])
                for name, user in (("live", live), ("expired", expired), ("revoked", revoked),
                                   ("revoked_lately", revoked_lately))}
    rotated = await refresh(client, live["refresh_token"])  # the live login now has a rotated row too
    assert rotated.status_code == 200, rotated.text
    await pool.execute("UPDATE refresh_tokens SET expires_at = now() - interval '8 days', "
                       "created_at = now() - interval '38 days' WHERE family_id = $1", families["expired"])
    for user in (revoked, revoked_lately):
        out = await client.post("/v1/auth/logout", json={"refresh_token": user["refresh_token"]},
                                headers=user["headers"])
        assert out.status_code == 204, out.text
    await pool.execute("UPDATE refresh_tokens SET revoked_at = now() - interval '8 days' WHERE family_id = $1",
                       families["revoked"])

    assert await prune_refresh_tokens(pool, settings) >= 2

    counts = {name: await family_rows(pool, family) for name, family in families.items()}
    assert counts == {"live": 2, "expired": 0, "revoked": 0, "revoked_lately": 1}
    again = await refresh(client, rotated.json()["refresh_token"])
    assert again.status_code == 200, again.text  # the live token still works


async def test_an_old_rotated_token_of_a_live_login_still_gives_a_thief_away(api, client, pool, settings):
    """Rotated long ago, expired past the retention, but its login lives on: kept, so presenting it
    still revokes the whole login."""
    user = await api.user()
    family = await family_of(pool, user["refresh_token"])
    newer = await refresh(client, user["refresh_token"])
    assert newer.status_code == 200, newer.text
    await pool.execute("UPDATE refresh_tokens SET expires_at = now() - interval '8 days' WHERE token_hash = $1",
                       hash_of(user["refresh_token"]))

    await prune_refresh_tokens(pool, settings)

    assert await family_rows(pool, family) == 2
    reused = await refresh(client, user["refresh_token"])
    assert reused.status_code == 401 and "reuse" in reused.json()["detail"]
    assert (await refresh(client, newer.json()["refresh_token"])).status_code == 401  # the login is revoked
