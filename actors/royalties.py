"""The monthly royalty run as a Ray task: the computation goes wherever the cluster has a CPU free,
not onto an API replica. ``verseflow royalties run`` submits it; the work is ``billing.royalties.run_month``."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

import ray

from verseflow.settings import Settings


@ray.remote(num_cpus=1, max_retries=2)  # a lost worker reruns it: the run is idempotent per month and model
def run_royalties(settings: Settings, month: str, model: str, currency: str, pool_override: int | None,
                  post_to_ledger: bool) -> dict[str, Any]:
    from billing import royalties
    from verseflow.db import create_pool

    async def run() -> dict[str, Any]:
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            result = await royalties.run_month(pool, month=month, model=model, currency=currency,
                                               share_bp=settings.royalty_pool_share_bp, pool_override=pool_override,
                                               post_to_ledger=post_to_ledger,
                                               timeout_s=settings.royalty_query_timeout_s,
                                               work_mem_mb=settings.royalty_work_mem_mb)
        finally:
            await pool.close()
        return {**asdict(result), "run_id": str(result.run_id)}

    return asyncio.run(run())
