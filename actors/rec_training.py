"""Training the recommendation model as a Ray task: a thin adapter over ``ml.training.train_version``.

It reserves what a transcoding job does (``actors.transcode.batch_reservation``: a batch slot where nodes
offer them, else ``rec_train_cpus`` CPUs), so that on a 2-core ``make up``, whose Serve replicas hold
most of Ray's CPUs, a run starts instead of waiting for a whole free CPU for ever. No retries (a failed
run leaves its version ``failed``; the next request or schedule makes a new one). The task opens its
own pool: it may run on any node of the cluster.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray import ObjectRef

from actors.transcode import batch_reservation
from ml import training
from verseflow import logs
from verseflow.db import create_pool
from verseflow.settings import Settings
from verseflow.storage import object_store


async def _train(settings: Settings, version: int) -> dict[str, Any]:
    pool = await create_pool(settings)
    try:
        return await training.train_version(pool, object_store(settings), settings, version)
    finally:
        await pool.close()


@ray.remote(max_retries=0)
def train_task(settings: Settings, version: int) -> dict[str, Any]:
    logs.configure()
    return asyncio.run(_train(settings, version))


def launch(settings: Settings, version: int) -> ObjectRef:
    """Start the run; the version row tells how it ends (the reference need not be kept)."""
    return train_task.options(**batch_reservation(settings.rec_train_cpus)).remote(settings, version)
