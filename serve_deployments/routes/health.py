"""Liveness (``/health``) and readiness (``/ready``: PostgreSQL, Redis and Ray reachable)."""

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serve_deployments.deps import Ctx

router = APIRouter(tags=["operations"])
CHECK_TIMEOUT_S = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    """The process answers: nothing else is checked."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "a dependency is unreachable"}})
async def ready(ctx: Ctx) -> JSONResponse:
    checks = {
        "postgres": _check(ctx.pool.fetchval("SELECT 1")),
        "redis": _check(ctx.redis.ping()),
        "ray": _check(asyncio.to_thread(_ray_ok)),
    }
    results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    ok = all(r == "ok" for r in results.values())
    return JSONResponse({"status": "ready" if ok else "unavailable", "checks": results},
                        status_code=200 if ok else 503)


async def _check(awaitable) -> str:
    try:
        result = await asyncio.wait_for(awaitable, CHECK_TIMEOUT_S)
        return "ok" if result not in (False, None) else "failed"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; report its kind only
        return f"failed: {type(exc).__name__}"


def _ray_ok() -> bool:
    import ray

    if not ray.is_initialized():
        return False
    return bool(ray.nodes())
