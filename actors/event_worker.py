"""The event worker: a Ray actor that runs the outbox relay, the event consumer groups and periodic upkeep.

It owns one asyncpg pool and one Redis client and runs the loops from ``verseflow.events`` with the
handlers the domain packages provide; ``consumer_groups`` is the one place that says which groups
exist and what they handle, ``periodic_jobs`` what runs on a timer. It is a named, detached actor
restarted by Ray whenever its process dies (``max_restarts=-1``); the loops start from ``__init__``
(an async actor's constructor runs on its event loop), so a restarted worker resumes on its own. A
second worker anywhere in the cluster would be safe too: relays skip each other's rows, consumers
share their groups and sweeps and prunes skip rows another one holds.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable

import asyncpg
import ray
from ray.actor import ActorHandle
from redis.asyncio import Redis

from accounts import registration, sessions
from accounts import retention as accounts_retention
from actors import named
from actors.room_host import notify_user
from audio import metrics as audio_metrics
from audio import resumable
from billing import family, royalties, subscriptions
from ml import interactions, training, trending
from verseflow import logs
from verseflow.db import create_pool
from verseflow.events import lag, retention
from verseflow.events.consumer import Consumer
from verseflow.events.loops import TRANSIENT_ERRORS, every, wait_any
from verseflow.events.relay import OutboxRelay, stream_key
from verseflow.redis_client import create_redis
from verseflow.settings import Settings
from verseflow.storage import object_store

ACTOR_NAME = "verseflow-event-worker"
NAMESPACE = named.NAMESPACE

log = logs.get_logger("actors.event_worker")


def consumer_groups(pool: asyncpg.Pool, redis: Redis, settings: Settings) -> list[Consumer]:
    """Every consumer group and its handlers. A group's name is its idempotency key: never rename one."""
    return [
        Consumer(pool, redis, settings, group="accounts.registration", handlers=registration.handlers(pool)),
        Consumer(pool, redis, settings, group="accounts.sessions", handlers=sessions.handlers(redis, settings)),
        Consumer(pool, redis, settings, group=interactions.GROUP, handlers=interactions.handlers(settings)),
        Consumer(pool, redis, settings, group="billing.notify", handlers=_billing_notices(settings)),
    ]


def _billing_notices(settings: Settings) -> dict:
    """Plan changes, a subscription's or a family seat's, reach the user's open sessions."""
    notify = functools.partial(notify_user, settings)
    return subscriptions.handlers(settings, notify) | family.handlers(settings, notify)


def periodic_jobs(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event,
                  redis: Redis | None = None) -> list[Awaitable[None]]:
    """Upkeep on a timer: expired resumable uploads and their bytes go; so do the rows past their retention;
    the recommendation model is retrained; backlogs are sampled into gauges (with ``redis``)."""
    store = object_store(settings)
    jobs = [] if redis is None else [
        every(settings.metrics_sample_interval_s, lambda: sample_backlogs(pool, redis, settings), stop, log=log)]
    jobs += [
        every(settings.resumable_sweep_interval_s, lambda: resumable.sweep_expired(pool, store), stop, log=log),
        every(settings.prune_interval_s, lambda: prune(pool, settings), stop, log=log),
    ]
    if settings.rec_train_interval_s > 0:
        # Checked more often than it fires: the interval counts from the last run, whoever started it.
        check_s = min(settings.rec_train_interval_s, 600.0)
        jobs.append(every(check_s, lambda: scheduled_training(pool, settings), stop, log=log))
    return jobs


async def prune(pool: asyncpg.Pool, settings: Settings) -> dict[str, int]:
    """Every retention rule once (what is kept and why: ``verseflow.events.retention``,
    ``accounts.retention``); returns how many rows each table lost."""
    pruned = {
        "outbox": await retention.prune_outbox(pool, settings),
        "processed_events": await retention.prune_processed_events(pool, settings),
        "refresh_tokens": await accounts_retention.prune_refresh_tokens(pool, settings),
        "qualified_plays": await royalties.prune_qualified_plays(pool, settings),
        "track_listens": await trending.prune_listens(pool, settings),
        "open_plays_ended": await interactions.end_stale_plays(pool, settings),
    }
    if any(pruned.values()):
        log.info("pruned rows past their retention: %s", pruned)
    return pruned


async def sample_backlogs(pool: asyncpg.Pool, redis: Redis, settings: Settings) -> None:
    """The backlog gauges: outbox, every consumer group, the transcoding queue."""
    groups = [c.group for c in consumer_groups(pool, redis, settings)]
    await lag.sample(pool, redis, stream_key(settings), groups)
    await audio_metrics.sample_queue(pool)


async def scheduled_training(pool: asyncpg.Pool, settings: Settings) -> None:
    """Start a training run as a Ray task when ``rec_train_interval_s`` passed since the last run."""
    from actors.rec_training import launch

    if await training.due_for_schedule(pool, settings):
        version = await training.request_version(pool, "schedule")
        launch(settings, version)
        log.info("scheduled training of recommendation model %s", version)


@ray.remote(max_restarts=-1, num_cpus=0)
class EventWorker:
    def __init__(self, settings: Settings) -> None:
        logs.configure()
        self._settings = settings
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._loops = asyncio.get_running_loop().create_task(self._run())

    async def ready(self) -> None:
        """Return once the relay and the consumers are running (or raise why they cannot)."""
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait([ready, self._loops], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self._loops.done():
            self._loops.result()  # raises what ended the loops

    async def stop(self) -> None:
        """Finish the current passes and close the connections."""
        self._stop.set()
        await self._loops

    async def _run(self) -> None:
        pool = await self._connect()
        if pool is None:
            return
        redis = create_redis(self._settings)
        try:
            loops = [OutboxRelay(pool, redis, self._settings).run(self._stop)]
            loops += [consumer.run(self._stop) for consumer in consumer_groups(pool, redis, self._settings)]
            loops += periodic_jobs(pool, self._settings, self._stop, redis)
            self._ready.set()
            await asyncio.gather(*loops)
        except Exception:
            log.exception("event worker loops ended on an unexpected error")
            raise
        finally:
            await redis.aclose()
            await pool.close()

    async def _connect(self) -> asyncpg.Pool | None:
        """The pool, once PostgreSQL answers (it may start after the worker); None if stopped first."""
        while not self._stop.is_set():
            try:
                return await create_pool(self._settings)
            except TRANSIENT_ERRORS as exc:
                log.warning("event worker cannot reach PostgreSQL yet: %r", exc)
                await wait_any(self._stop, seconds=self._settings.relay_poll_interval_s)
        return None


def start_event_worker(settings: Settings, timeout_s: float = 60.0) -> ActorHandle:
    """Start the worker (or find the running one) and wait until its loops run."""
    handle = EventWorker.options(
        name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(settings)
    ray.get(handle.ready.remote(), timeout=timeout_s)
    return handle


def stop_event_worker(handle: ActorHandle, timeout_s: float = 30.0) -> None:
    """Stop the loops cleanly, then end the actor for good (no restart)."""
    try:
        ray.get(handle.stop.remote(), timeout=timeout_s)
    finally:
        ray.kill(handle)
