"""A minimal Grafana HTTP API for the push tests: no Grafana server can be installed on this machine
(Debian has no package, PyPI and npm none that ships the server), so the five endpoints that
``ops/grafana.py`` uses are served here as Grafana 10/11 documents them.

It behaves as Grafana does where the push depends on it: bearer-token auth (401 without it), folders
by uid (404 when missing; a dashboard into a missing folder is refused), and every save of a
dashboard (``POST /api/dashboards/db``) is a new version, whether or not anything changed; without
``overwrite`` a save of an existing uid is refused (412). ``saves`` records every save for the tests.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class GrafanaStub:
    def __init__(self, token: str) -> None:
        self.token = token
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.saves: list[tuple[str, int]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                stub._serve(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                stub._serve(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return _reply(handler, 401, {"message": "Unauthorized"})
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"{}") if length else {}
        path = handler.path.split("?", 1)[0]
        if method == "GET" and path.startswith("/api/folders/"):
            folder = self.folders.get(path.removeprefix("/api/folders/"))
            return _reply(handler, 200, folder) if folder else _reply(handler, 404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            uid = body.get("uid") or f"f{len(self.folders)}"
            if uid in self.folders:
                return _reply(handler, 409, {"message": "a folder with the same uid already exists"})
            self.folders[uid] = {"id": len(self.folders) + 1, "uid": uid, "title": body["title"]}
            return _reply(handler, 200, self.folders[uid])
        if method == "GET" and path.startswith("/api/dashboards/uid/"):
            stored = self.dashboards.get(path.removeprefix("/api/dashboards/uid/"))
            if stored is None:
                return _reply(handler, 404, {"message": "Dashboard not found"})
            return _reply(handler, 200, {"dashboard": stored["dashboard"],
                                         "meta": {"folderUid": stored["folderUid"],
                                                  "version": stored["dashboard"]["version"]}})
        if method == "POST" and path == "/api/dashboards/db":
            return self._save(handler, body)
        return _reply(handler, 404, {"message": "Not found"})

    def _save(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        dashboard, folder = dict(body["dashboard"]), body.get("folderUid", "")
        if folder and folder not in self.folders:
            return _reply(handler, 400, {"message": "folder not found"})
        uid = dashboard["uid"]
        stored = self.dashboards.get(uid)
        if stored is not None and not body.get("overwrite") \
                and dashboard.get("version") != stored["dashboard"]["version"]:
            return _reply(handler, 412, {"status": "version-mismatch", "message": "version-mismatch"})
        version = 1 if stored is None else stored["dashboard"]["version"] + 1
        ident = len(self.dashboards) + 1 if stored is None else stored["dashboard"]["id"]
        dashboard.update(id=ident, version=version)
        self.dashboards[uid] = {"dashboard": dashboard, "folderUid": folder}
        self.saves.append((uid, version))
        return _reply(handler, 200, {"id": ident, "uid": uid, "version": version, "status": "success",
                                     "url": f"/d/{uid}", "slug": uid})


def _reply(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
