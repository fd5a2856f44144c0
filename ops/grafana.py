"""Push the dashboards to a Grafana (any version from 10 on) with ``grafana-client``, idempotently.

Each dashboard keeps its ``uid``; a push reads the stored one first and writes only when what the
code generates differs from it (compared on the keys VerseFlow sets, ignoring Grafana's own ``id``
and ``version``), so pushing twice makes no new version and an operator's Grafana history shows one
version per real change. Dashboards go into one folder (``VerseFlow``, uid ``verseflow``), created
when missing. Ray's own generated dashboards (written by Ray's dashboard into
``<session>/metrics/grafana/dashboards/``) are pushed beside them the same way.

The token comes from the environment (``VERSEFLOW_GRAFANA_TOKEN``, else ``GRAFANA_TOKEN``): a Grafana
service account token with the Editor role; a URL with ``user:password@`` uses basic auth instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

FOLDER_UID = "verseflow"
FOLDER_TITLE = "VerseFlow"
RAY_DASHBOARDS = Path("/tmp/ray/session_latest/metrics/grafana/dashboards")
_GRAFANA_OWNED = {"id", "version"}


@dataclass(frozen=True)
class Pushed:
    uid: str
    title: str
    action: str  # created | updated | unchanged
    version: int | None


def connect(url: str, token: str | None = None, *, timeout_s: float = 10.0) -> GrafanaApi:
    """A client for ``url``; the token defaults to the environment's."""
    token = token or os.environ.get("VERSEFLOW_GRAFANA_TOKEN") or os.environ.get("GRAFANA_TOKEN")
    return GrafanaApi.from_url(url, credential=token or None, timeout=timeout_s)


def ensure_folder(api: GrafanaApi, uid: str = FOLDER_UID, title: str = FOLDER_TITLE) -> str:
    try:
        api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder(title, uid=uid)
    return uid


def unchanged(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether the stored dashboard already has every key we set, with the same value."""
    return all(stored.get(k) == v for k, v in wanted.items() if k not in _GRAFANA_OWNED)


def push_one(api: GrafanaApi, dashboard: dict[str, Any], folder_uid: str, message: str) -> Pushed:
    uid = dashboard["uid"]
    try:
        stored = api.dashboard.get_dashboard(uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        stored = None
    if stored is not None and unchanged(stored["dashboard"], dashboard) \
            and stored.get("meta", {}).get("folderUid", folder_uid) == folder_uid:
        return Pushed(uid, dashboard["title"], "unchanged", stored["dashboard"].get("version"))
    body = {k: v for k, v in dashboard.items() if k not in _GRAFANA_OWNED}
    result = api.dashboard.update_dashboard({"dashboard": {**body, "id": None}, "folderUid": folder_uid,
                                             "overwrite": True, "message": message})
    return Pushed(uid, dashboard["title"], "created" if stored is None else "updated", result.get("version"))


def ray_dashboards(folder: Path = RAY_DASHBOARDS) -> list[dict[str, Any]]:
    """Ray's own generated dashboards, if this machine's Ray session wrote them (its dashboard was on)."""
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def push(api: GrafanaApi, dashboards: list[dict[str, Any]], *, folder_uid: str = FOLDER_UID,
         message: str = "verseflow dashboards push") -> list[Pushed]:
    """Push every dashboard into the folder (made if missing); returns what happened to each."""
    ensure_folder(api, folder_uid)
    return [push_one(api, d, folder_uid, message) for d in dashboards]
