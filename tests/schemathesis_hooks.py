"""Schemathesis hooks for ``make schemathesis``: fuzz as a signed-in artist, not as a stranger.

Without a token, every protected operation answers 401 and the fuzzer never reaches the code
behind it. This provider registers a throw-away artist on the running server and gives each case a
fresh access token, obtained by rotating the refresh token (cheap, not rate-limited like logins).
A fuzzed ``POST /v1/auth/logout`` may revoke the family; the provider then signs in again.

Loaded by ``SCHEMATHESIS_HOOKS=tests.schemathesis_hooks``; the server is
``VERSEFLOW_FUZZ_URL`` (default ``http://127.0.0.1:8000``).
"""

from __future__ import annotations

import os
import secrets

import httpx
import schemathesis

BASE_URL = os.environ.get("VERSEFLOW_FUZZ_URL", "http://127.0.0.1:8000")
# tus PATCH bodies (/v1/uploads) are raw bytes, as application/octet-stream ones are.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


@schemathesis.auth(refresh_interval=None)
class ArtistBearer:
    """A bearer token of one artist account, refreshed for every case."""

    def __init__(self) -> None:
        self.email = f"fuzz-{secrets.token_hex(6)}@example.com"
        self.password = secrets.token_urlsafe(18)
        self.refresh_token: str | None = None
        self.http = httpx.Client(base_url=BASE_URL, timeout=30)
        response = self.http.post("/v1/auth/register", json={
            "email": self.email, "password": self.password, "display_name": "Fuzz", "role": "artist"})
        response.raise_for_status()

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        if self.refresh_token is not None:
            response = self.http.post("/v1/auth/refresh", json={"refresh_token": self.refresh_token})
            if response.status_code == 200:
                return self._keep(response.json())
        response = self.http.post("/v1/auth/token", data={"username": self.email, "password": self.password})
        response.raise_for_status()
        return self._keep(response.json())

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    def _keep(self, pair: dict[str, str]) -> str:
        self.refresh_token = pair["refresh_token"]
        return pair["access_token"]
