"""``POST /v1/plays``: listening events (start, progress, complete) for analytics, recommendations and royalties."""

from fastapi import APIRouter, status

from audio import service
from serve_deployments.deps import Ctx, CurrentUser
from serve_deployments.schemas import PlayIn, PlayOut

router = APIRouter(prefix="/v1/plays", tags=["audio"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=PlayOut)
async def record_play(body: PlayIn, ctx: Ctx, who: CurrentUser):
    """Idempotent: the same (play_id, event, position_ms) sent twice is stored once (``recorded: false``)."""
    return {"recorded": await service.record_play(ctx.pool, who, body.model_dump())}
