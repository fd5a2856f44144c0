"""``TranscodeJob``: one Ray actor per upload, running ``audio/jobs.py`` until the track is published.

Each job reserves one ``transcode_slots`` resource (nodes offer one per core) or, on a cluster
without them, ``transcode_cpus`` CPUs, so Ray runs as many at once as there are cores and queues
the rest: concurrency is bounded by CPUs, not by uploads. The actor is named after
its track and detached (it outlives the API replica that launched it) and restarted by Ray when its
process dies, up to ``transcode_max_attempts`` times; each start is a new attempt counted in
PostgreSQL, so a kill mid-encode simply runs the job again and the last attempt past the limit
marks the track failed. It runs at ``transcode_niceness`` so that encoding never starves the API,
and removes itself once the job has an outcome. Launching is idempotent (``get_if_exists``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid

import ray

from actors import named
from actors.fingerprint_shard import catalogue
from actors.room_host import notify_user
from audio import jobs, metrics, repository
from verseflow import logs
from verseflow.db import create_pool
from verseflow.settings import Settings
from verseflow.storage import object_store

NAMESPACE = named.NAMESPACE
NAME = "transcode-{}"
#: Nodes advertise one per core (cluster/local.py, rayservice.yaml): a core's worth of batch work, taken by
#: transcoding jobs and by recommendation training runs (actors/rec_training.py) alike.
SLOT = "transcode_slots"

log = logs.get_logger("actors.transcode")


@ray.remote
class TranscodeJob:
    def __init__(self, settings: Settings, track_id: uuid.UUID) -> None:
        logs.configure()
        os.nice(settings.transcode_niceness)
        self._settings = settings
        self._track_id = track_id
        self._job = asyncio.get_running_loop().create_task(self._run())  # held: a task needs a reference

    async def _run(self) -> None:
        """Attempts until one has an outcome (an unexpected error counts as an attempt), then leave."""
        settings = self._settings
        pool = await create_pool(settings, min_size=1, max_size=3)
        store = object_store(settings)
        try:
            for _ in range(settings.transcode_max_attempts + 1):
                try:
                    outcome = await jobs.run(pool, store, settings, self._track_id,
                                             functools.partial(notify_user, settings), catalogue(settings))
                except Exception:
                    metrics.JOBS.inc(outcome="error")
                    log.exception("transcoding attempt failed", extra={"track_id": str(self._track_id)})
                    continue
                metrics.JOBS.inc(outcome=outcome)
                log.info("transcoding job ended", extra={"track_id": str(self._track_id), "outcome": outcome})
                break
        finally:
            await pool.close()
        asyncio.get_running_loop().call_later(1.0, _leave)


def _leave() -> None:
    ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


def launch(settings: Settings, track_id: uuid.UUID) -> ray.actor.ActorHandle:
    """Start (or find) the job of one upload."""
    return TranscodeJob.options(
        name=NAME.format(track_id), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        max_restarts=settings.transcode_max_attempts, **batch_reservation(settings.transcode_cpus),
    ).remote(settings, track_id)


def batch_reservation(cpus: float) -> dict[str, object]:
    """A slot where nodes offer them, else ``cpus`` CPUs: what one core-bound batch job reserves.

    Slots (one per core) bound concurrency by cores without competing with the fractional CPUs that
    Serve replicas reserve: on a 2-core laptop those leave no whole CPU free for a job (a job asking
    for one would wait for ever).
    """
    if ray.cluster_resources().get(SLOT, 0) >= 1:
        return {"num_cpus": 0, "resources": {SLOT: 1}}
    return {"num_cpus": cpus}


def job_for(track_id: uuid.UUID) -> ray.actor.ActorHandle | None:
    try:
        return ray.get_actor(NAME.format(track_id), namespace=NAMESPACE)
    except ValueError:
        return None


async def resume_open_jobs(settings: Settings) -> int:
    """Relaunch the jobs of uploads still processing (after a cluster restart); returns how many."""
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        open_ids = await repository.open_jobs(pool)
    finally:
        await pool.close()
    for track_id in open_ids:
        launch(settings, track_id)
    return len(open_ids)
