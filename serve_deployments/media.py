"""The ``media`` Serve deployment: published audio behind short-lived signed URLs, with HTTP Range.

Its own application (route prefix ``/media``) so that it scales apart from the API and can sit behind
a CDN: it needs no database, only the signing secret and the object store. Each request is checked
against the grant in its path (``verseflow/signing.py``): an unsigned, tampered or expired URL, or a
file of a rung the grant does not include, gets 403. Manifests are cut to the granted rungs; segments
and files are served by Starlette's ``FileResponse`` (single and multiple ``Range`` requests,
``HEAD``, ``ETag`` and ``Last-Modified``) or, with the S3 backend, by a 307 redirect to a presigned
URL of the bucket, which serves ``Range`` itself. Everything under a version prefix is immutable, so
responses may be cached until the grant expires.
"""

import json
import re
import time
from functools import lru_cache

from fastapi import FastAPI, Response
from ray import serve

from audio.delivery import MANIFEST_FILE, MediaIndex, content_type, filter_master, filter_mpd, rung_of, valid_file_name
from serve_deployments import problems
from serve_deployments.objects import serve_object
from verseflow import logs
from verseflow.errors import Forbidden, NotFound
from verseflow.settings import Settings, get_settings
from verseflow.signing import MediaGrant, verify
from verseflow.storage import ObjectStore, object_store

_VERSION = re.compile(r"^v[0-9]+-[0-9a-f]{8}$")
MAX_CACHE_S = 86_400


def create_media_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure()
    store = object_store(settings)
    app = FastAPI(title="VerseFlow media", openapi_url=None, docs_url=None, redoc_url=None)
    problems.install(app)

    @app.api_route("/{track_id}/{version}/{rungs}/{expires}/{signature}/{name}", methods=["GET", "HEAD"],
                   include_in_schema=False)
    def media_file(track_id: str, version: str, rungs: str, expires: str, signature: str,
                   name: str) -> Response:
        """Sync on purpose: store reads may block (S3), so FastAPI runs this on its thread pool."""
        grant = verify(settings.secret(), track_id, version, rungs, expires, signature)
        if not _VERSION.match(grant.version) or not valid_file_name(name):
            raise NotFound("no such media file")
        prefix = f"tracks/{grant.track_id}/{grant.version}"
        index = _media_index(store, prefix)
        rung = rung_of(name, index)
        if rung is not None and rung not in grant.rungs:
            raise Forbidden(f"this URL does not grant the {rung} rendition")
        headers = _cache_headers(grant)
        key = f"{prefix}/{name}"
        if name.endswith(".m3u8") and rung is None:
            text = filter_master(store.read_bytes(key).decode(), grant.rungs)
            return Response(text, media_type=content_type(name), headers=headers)
        if name.endswith(".mpd"):
            text = filter_mpd(store.read_bytes(key).decode(), grant.rungs, index)
            return Response(text, media_type=content_type(name), headers=headers)
        return serve_object(store, key, content_type(name), headers, expires_s=grant.expires - int(time.time()))

    @app.api_route("/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def unsigned(path: str) -> Response:
        raise Forbidden("media URLs must be signed: get them from GET /v1/tracks/{id}")

    return app


@lru_cache(maxsize=4096)
def _media_index(store: ObjectStore, prefix: str) -> MediaIndex:
    """A version's ``media.json`` (immutable once published, so cached)."""
    try:
        return MediaIndex.from_json(json.loads(store.read_bytes(f"{prefix}/{MANIFEST_FILE}")))
    except NotFound:
        raise NotFound("no such media") from None


def _cache_headers(grant: MediaGrant) -> dict[str, str]:
    """Immutable content, cacheable for as long as the grant lasts (capped at a day)."""
    remaining = max(0, min(MAX_CACHE_S, grant.expires - int(time.time())))
    return {"Cache-Control": f"public, max-age={remaining}, immutable", "Access-Control-Allow-Origin": "*"}


media_app = create_media_app()


@serve.deployment(name="media", max_ongoing_requests=200, health_check_period_s=10)
@serve.ingress(media_app)
class Media:
    """Signed media files; stateless, so it scales on request load alone."""
