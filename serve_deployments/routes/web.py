"""``GET /``: the API's root sends a browser to the web app (the ``web`` application at ``/app/``)."""

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

router = APIRouter(tags=["operations"])


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/app/", status_code=307)
