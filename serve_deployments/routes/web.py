"""``GET /``: the API's root sends a browser to the web app (the ``web`` application at ``/app/``)."""

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

router = APIRouter(tags=["operations"])


@router.get("/", response_class=RedirectResponse, status_code=307,
            responses={307: {"description": "the web app, served at `/app/` by the `web` deployment"}})
async def root() -> RedirectResponse:
    """Open http://127.0.0.1:8000 in a browser: the single-page app (web/)."""
    return RedirectResponse("/app/", status_code=307)
