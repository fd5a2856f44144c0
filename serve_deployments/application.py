"""The Serve application graph: ``serve deploy`` and ``verseflow up`` both import from here."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from serve_deployments.api import Api
from serve_deployments.gateway import DocumentGateway, RealtimeGateway
from serve_deployments.media import Media
from serve_deployments.web import Web


def build(deployment_options: dict[str, dict[str, Any]] | None = None) -> Application:
    """Bind the deployments into one application (gateway and media join here as they land).

    ``deployment_options`` maps a deployment name to ``.options(...)`` arguments; the launcher passes
    those of ``cluster/serve_config.yaml`` so that local runs scale like cluster runs.
    """
    options = deployment_options or {}
    return Api.options(**options.get("api", {})).bind()


def build_realtime(deployment_options: dict[str, dict[str, Any]] | None = None) -> Application:
    """``WS /v1/ws``: its own application because Serve routes WebSockets by route prefix."""
    return RealtimeGateway.options(**(deployment_options or {}).get("gateway", {})).bind()


def build_documents(deployment_options: dict[str, dict[str, Any]] | None = None) -> Application:
    """``WS /v1/yjs/{room}``."""
    return DocumentGateway.options(**(deployment_options or {}).get("documents", {})).bind()


def build_media(deployment_options: dict[str, dict[str, Any]] | None = None) -> Application:
    """``GET /media/...``: signed HLS, DASH, MP3 and waveform files."""
    return Media.options(**(deployment_options or {}).get("media", {})).bind()


def build_web(deployment_options: dict[str, dict[str, Any]] | None = None) -> Application:
    """``GET /app/...``: the single-page app built from ``web/`` (``GET /`` redirects there)."""
    return Web.options(**(deployment_options or {}).get("web", {})).bind()


#: (application name, route prefix, builder): every application ``make up`` runs, in order.
APPLICATIONS = (
    ("verseflow", "/", build),
    ("realtime", "/v1/ws", build_realtime),
    ("documents", "/v1/yjs", build_documents),
    ("media", "/media", build_media),
    ("web", "/app", build_web),
)

app = build()
realtime_app = build_realtime()
documents_app = build_documents()
media_app = build_media()
web_app = build_web()
