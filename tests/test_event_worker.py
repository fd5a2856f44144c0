"""The EventWorker Ray actor end to end: registering through the API leads to a profile, with no
test code between the outbox and the handlers (relay, stream, consumer group and saga all run in
the actor); and its periodic prune removes an event published longer ago than the retention."""

from __future__ import annotations

import asyncio
import uuid

from actors.event_worker import start_event_worker, stop_event_worker


async def test_event_worker_completes_registration(ray_cluster, api, settings):
    worker_settings = settings.model_copy(update={"events_stream": f"worker-{uuid.uuid4().hex[:8]}"})
    worker = await asyncio.to_thread(start_event_worker, worker_settings)
    try:
        user = await api.user()
        me = None
        for _ in range(600):  # bounded: 30 s
            me = (await api.http.get("/v1/me", headers=user["headers"])).json()
            if me["profile"] is not None:
                break
            await asyncio.sleep(0.05)
        assert me["profile"] == {"bio": "", "avatar_url": None, "location": None, "website": None}
    finally:
        await asyncio.to_thread(stop_event_worker, worker)


async def test_event_worker_prunes_what_outlived_its_retention(ray_cluster, pool, settings):
    old = uuid.uuid4()
    await pool.execute(
        """INSERT INTO outbox (id, type, aggregate_id, payload, created_at, published_at)
           VALUES ($1, 'test.worker_prune', 'agg', '{}', now() - interval '9 days', now() - interval '8 days')""", old)
    worker_settings = settings.model_copy(update={"events_stream": f"worker-{uuid.uuid4().hex[:8]}"})
    worker = await asyncio.to_thread(start_event_worker, worker_settings)
    try:
        for _ in range(600):  # bounded: 30 s; the first prune runs as the worker starts
            if not await pool.fetchval("SELECT count(*) FROM outbox WHERE id = $1", old):
                break
            await asyncio.sleep(0.05)
        assert not await pool.fetchval("SELECT count(*) FROM outbox WHERE id = $1", old)
    finally:
        await asyncio.to_thread(stop_event_worker, worker)
