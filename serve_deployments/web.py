"""The ``web`` Serve deployment: the single-page app built from ``web/`` (Vite) under ``/app``.

Its own application because Serve routes by prefix and the API owns ``/`` (``GET /`` answers a
redirect here, ``routes/web.py``). Vite names every built asset after its content hash, so
``/app/assets/*`` is cached for a year as ``immutable``; ``index.html`` (and every client-side route,
which is ``index.html`` too) is ``no-cache`` so that a new build is picked up on the next load. It
reads files only: no database, no secret.
"""

from __future__ import annotations

import mimetypes
import re

from fastapi import FastAPI, Response
from fastapi.responses import FileResponse
from ray import serve

from serve_deployments import problems
from verseflow import logs
from verseflow.errors import NotFound
from verseflow.settings import Settings, get_settings

IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
#: Vite's output names: letters, digits, '-', '_' and '.', never a path separator or '..'.
_ASSET_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,200}$")


def create_web_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure()
    dist = settings.web_dist_dir
    app = FastAPI(title="VerseFlow web", openapi_url=None, docs_url=None, redoc_url=None)
    problems.install(app)

    @app.api_route("/assets/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    def asset(name: str) -> Response:
        path = dist / "assets" / name
        if not _ASSET_NAME.match(name) or ".." in name or not path.is_file():
            raise NotFound("no such asset")
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": IMMUTABLE})

    @app.api_route("/{route:path}", methods=["GET", "HEAD"], include_in_schema=False)
    def index(route: str) -> Response:
        """Every other path is a client-side route: the app's shell, never cached without revalidation."""
        page = dist / "index.html"
        if not page.is_file():
            raise NotFound("the web app is not built: run `make web` (npm ci && npm run build in web/)")
        return FileResponse(page, media_type="text/html", headers={"Cache-Control": NO_CACHE})

    return app


app = create_web_app()


@serve.deployment(name="web", max_ongoing_requests=200, health_check_period_s=10)
@serve.ingress(app)
class Web:
    """Static files of the built app; stateless, behind a CDN in production."""
