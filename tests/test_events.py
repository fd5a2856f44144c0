"""Events: the outbox relay, consumer groups, idempotent handling, reclaiming and dead letters.

Each test gets its own stream (and so its own groups and dead letters). A relay pass publishes
every unpublished outbox row, other tests' included, so assertions look at this test's events.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest

from verseflow.db import transaction
from verseflow.events.consumer import Consumer, dead_letter_key
from verseflow.events.outbox import Event, emit
from verseflow.events.relay import OutboxRelay, stream_key


@pytest.fixture
def isolated(settings):
    """Settings with a stream of this test's own, short blocking reads and a short reclaim idle time."""
    return settings.model_copy(update={
        "events_stream": f"events-{uuid.uuid4().hex[:8]}", "consumer_block_ms": 10,
        "consumer_reclaim_idle_ms": 100,
    })


async def eventually(check: Callable[[], Awaitable[bool]], attempts: int = 300) -> bool:
    """Poll ``check`` (bounded: ``attempts`` × 50 ms) until it holds."""
    for _ in range(attempts):
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def stream_events(redis, settings) -> list[Event]:
    return [Event.from_fields(fields) for _, fields in await redis.xrange(stream_key(settings))]


async def pending(redis, settings, group: str) -> int:
    return (await redis.xpending(stream_key(settings), group))["pending"]


async def test_relay_publishes_committed_rows_and_skips_rolled_back_ones(pool, redis, isolated):
    async with transaction(pool) as conn:
        committed = [await emit(conn, "test.committed", f"agg-{i}", n=i) for i in range(3)]
    with pytest.raises(RuntimeError):
        async with transaction(pool) as conn:
            rolled_back = await emit(conn, "test.rolled_back", "agg")
            raise RuntimeError("the change failed")
    relay = OutboxRelay(pool, redis, isolated)

    published = await relay.publish_pending()

    events = await stream_events(redis, isolated)
    assert len(events) == published
    ids = [event.id for event in events]
    assert [event for event in events if event.type == "test.committed"] == committed  # whole, in order
    assert rolled_back.id not in ids
    marked = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE id = ANY($1) AND published_at IS NOT NULL", ids)
    assert marked == len(ids)
    assert await relay.publish_pending() == 0


async def test_concurrent_relays_publish_each_row_once(pool, redis, isolated):
    async with transaction(pool) as conn:
        emitted = [await emit(conn, "test.concurrent", i, n=i) for i in range(40)]
    small_batches = isolated.model_copy(update={"relay_batch_size": 7})
    relays = [OutboxRelay(pool, redis, small_batches) for _ in range(3)]

    counts = await asyncio.gather(*(relay.publish_pending() for relay in relays))

    ids = [event.id for event in await stream_events(redis, isolated)]
    assert len(ids) == len(set(ids)) == sum(counts)
    assert {event.id for event in emitted} <= set(ids)


async def test_relay_loop_wakes_on_notification(pool, redis, isolated):
    relay = OutboxRelay(pool, redis, isolated.model_copy(update={"relay_poll_interval_s": 3600.0}))
    async with transaction(pool) as conn:
        before = await emit(conn, "test.before_start", "agg")
    stop = asyncio.Event()
    loop = asyncio.create_task(relay.run(stop))
    try:
        assert await eventually(lambda: _published(redis, isolated, before.id))  # the first pass ran
        async with transaction(pool) as conn:
            after = await emit(conn, "test.after_start", "agg")
        # Polling is hours away: only the NOTIFY from the outbox trigger can publish it.
        assert await eventually(lambda: _published(redis, isolated, after.id))
    finally:
        stop.set()
        await loop


async def _published(redis, settings, event_id: uuid.UUID) -> bool:
    return event_id in {event.id for event in await stream_events(redis, settings)}


async def test_user_playlist_and_track_changes_reach_the_stream(api, pool, redis, isolated):
    made = await api.artist_with_track("Events Song")
    owner = made["owner"]
    playlist = await api.http.post("/v1/playlists", json={"name": "Events"}, headers=owner["headers"])
    assert playlist.status_code == 201, playlist.text

    await OutboxRelay(pool, redis, isolated).publish_pending()

    events = await stream_events(redis, isolated)
    by_type = {event.type: event for event in events if event.aggregate_id in
               {owner["id"], made["artist_id"], made["track_id"], playlist.json()["id"]}}
    assert by_type["user.registered"].payload["user_id"] == owner["id"]
    assert by_type["track.created"].payload["title"] == "Events Song"
    assert by_type["playlist.created"].payload["owner_id"] == owner["id"]


async def test_consumer_handles_and_acknowledges(pool, redis, isolated):
    handled: list[Event] = []

    async def record(conn, event: Event) -> None:
        assert conn.is_in_transaction()
        handled.append(event)

    consumer = Consumer(pool, redis, isolated, group="recorder", handlers={"test.handled": [record]})
    async with transaction(pool) as conn:
        event = await emit(conn, "test.handled", "agg", n=1)
    await OutboxRelay(pool, redis, isolated).publish_pending()

    assert await consumer.process_once() >= 1

    assert handled == [event]
    assert await pending(redis, isolated, "recorder") == 0
    assert await pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE consumer = 'recorder' AND event_id = $1", event.id) == 1


async def test_redelivered_event_is_handled_once(pool, redis, isolated):
    calls: list[uuid.UUID] = []

    async def count(conn, event: Event) -> None:
        calls.append(event.id)

    members = [Consumer(pool, redis, isolated, group="counter", handlers={"test.once": [count]}, batch_size=1)
               for _ in range(2)]
    event = Event(type="test.once", payload={"n": 1}, aggregate_id="agg")
    for _ in range(2):  # what a relay does when it crashes between XADD and its commit
        await redis.xadd(stream_key(isolated), event.to_fields())

    acknowledged = [await member.process_once() for member in members]

    assert acknowledged == [1, 1]  # each member took one copy
    assert calls == [event.id]
    assert await pending(redis, isolated, "counter") == 0


async def test_pending_entry_of_a_dead_consumer_is_reclaimed(pool, redis, isolated):
    handled: list[Event] = []

    async def record(conn, event: Event) -> None:
        handled.append(event)

    survivor = Consumer(pool, redis, isolated, group="reclaim", handlers={"test.orphan": [record]})
    await survivor.process_once()  # creates the group; nothing to read yet
    event = Event(type="test.orphan", payload={}, aggregate_id="agg")
    await redis.xadd(stream_key(isolated), event.to_fields())
    taken = await redis.xreadgroup("reclaim", "dead-consumer", {stream_key(isolated): ">"})
    assert len(taken[0][1]) == 1  # delivered to a consumer that dies without acknowledging

    async def reclaimed() -> bool:
        await survivor.process_once()
        return bool(handled)

    assert await eventually(reclaimed)
    assert handled == [event]
    assert await pending(redis, isolated, "reclaim") == 0


async def test_failing_handler_is_retried_then_dead_lettered(pool, redis, isolated):
    poison = isolated.model_copy(update={"consumer_max_deliveries": 2})
    attempts: list[uuid.UUID] = []

    async def explode(conn, event: Event) -> None:
        await conn.execute("SELECT 1")
        attempts.append(event.id)
        raise RuntimeError("cannot handle this one")

    consumer = Consumer(pool, redis, poison, group="poisoned", handlers={"test.poison": [explode]})
    event = Event(type="test.poison", payload={"bad": True}, aggregate_id="agg")
    await redis.xadd(stream_key(poison), event.to_fields())

    async def dead_lettered() -> bool:
        await consumer.process_once()
        return await redis.xlen(dead_letter_key(poison)) > 0

    assert await eventually(dead_lettered)
    assert attempts == [event.id, event.id]  # first delivery, one retry; the third delivery is not run
    [(_, fields)] = await redis.xrange(dead_letter_key(poison))
    assert Event.from_fields(fields) == event
    assert fields["dead_letter_group"] == "poisoned" and fields["dead_letter_reason"] == "delivered 3 times"
    assert await pending(redis, poison, "poisoned") == 0
    assert await pool.fetchval("SELECT count(*) FROM processed_events WHERE event_id = $1", event.id) == 0


async def test_unreadable_entry_goes_straight_to_dead_letters(pool, redis, isolated):
    consumer = Consumer(pool, redis, isolated, group="strict", handlers={})
    await redis.xadd(stream_key(isolated), {"type": "test.garbled"})

    assert await consumer.process_once() == 1

    [(_, fields)] = await redis.xrange(dead_letter_key(isolated))
    assert fields["type"] == "test.garbled" and fields["dead_letter_reason"].startswith("unreadable entry")
    assert await pending(redis, isolated, "strict") == 0
