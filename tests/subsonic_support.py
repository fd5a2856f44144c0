"""Helpers for the Subsonic API tests: a raw client in both formats and all four auth mechanisms,
validation against the OpenSubsonic OpenAPI schemas (tests/data/opensubsonic), catalog seeding."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from accounts.model import Principal, Role
from catalog import artists, tracks

SCHEMAS = Path(__file__).parent / "data" / "opensubsonic"
NS = "{http://subsonic.org/restapi}"


def _retrieve(uri: str) -> Resource:
    path = Path(uri.removeprefix("file://"))
    return Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT202012)


_REGISTRY = Registry(retrieve=_retrieve)


@cache
def _validator(method: str) -> Draft202012Validator:
    folder = SCHEMAS / "endpoints" / method
    found = [p for p in folder.glob("*Response.json") if not p.name.endswith("SuccessResponse.json")]
    target = found[0] if found else SCHEMAS / "schemas" / "SubsonicResponse.json"
    return Draft202012Validator({"$ref": target.as_uri()}, registry=_REGISTRY)


def validate(method: str, body: dict[str, Any]) -> None:
    """Raise unless ``body`` matches the OpenSubsonic schema of ``method``'s response."""
    _validator(method).validate(body)


class Subsonic:
    """Raw requests to ``/rest/`` as a player app makes them."""

    def __init__(self, http: httpx.AsyncClient, username: str, password: str) -> None:
        self.http, self.username, self.password = http, username, password

    def credentials(self, auth: str) -> dict[str, str]:
        if auth == "token":
            salt = secrets.token_hex(6)
            return {"u": self.username, "s": salt,
                    "t": hashlib.md5((self.password + salt).encode()).hexdigest()}
        if auth == "plain":
            return {"u": self.username, "p": self.password}
        if auth == "enc":
            return {"u": self.username, "p": "enc:" + self.password.encode().hex()}
        if auth == "apikey":
            return {"apiKey": self.password}
        return {}

    async def raw(self, method: str, *, auth: str = "token", post: bool = False, view: bool = False,
                  headers: dict[str, str] | None = None, **params: Any) -> httpx.Response:
        query: list[tuple[str, str]] = [("v", "1.16.1"), ("c", "tests"), *self.credentials(auth).items()]
        for name, value in params.items():
            for item in value if isinstance(value, list) else [value]:
                query.append((name, str(item)))
        path = f"/rest/{method}" + (".view" if view else "")
        if post:
            form = {"content-type": "application/x-www-form-urlencoded", **(headers or {})}
            return await self.http.post(path, content=_form(query), headers=form)
        return await self.http.get(path, params=query, headers=headers)

    async def json(self, method: str, *, ok: bool = True, check_schema: bool = True, **kw: Any) -> dict[str, Any]:
        response = await self.raw(method, f="json", **kw)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        inner = body["subsonic-response"]
        assert inner["status"] == ("ok" if ok else "failed"), inner
        assert inner["openSubsonic"] is True and inner["version"] and inner["type"] and inner["serverVersion"]
        if check_schema:
            validate(method, body)
        return inner

    async def xml(self, method: str, *, ok: bool = True, **kw: Any) -> ET.Element:
        response = await self.raw(method, **kw)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/xml")
        root = ET.fromstring(response.content)
        assert root.tag == f"{NS}subsonic-response"
        assert root.get("status") == ("ok" if ok else "failed"), response.text
        assert root.get("openSubsonic") == "true" and root.get("version") and root.get("serverVersion")
        return root

    async def error(self, method: str, code: int, **kw: Any) -> str:
        """Both formats answer the error with HTTP 200, status failed and the code; returns the message."""
        inner = await self.json(method, ok=False, **kw)
        assert inner["error"]["code"] == code, inner
        root = await self.xml(method, ok=False, **kw)
        assert root.find(f"{NS}error").get("code") == str(code)
        return inner["error"]["message"]


def _form(items: list[tuple[str, str]]) -> bytes:
    return str(httpx.QueryParams(items)).encode()


async def app_password(api, user: dict, name: str = "phone") -> dict[str, Any]:
    response = await api.http.post("/v1/me/app-passwords", json={"name": name}, headers=user["headers"])
    assert response.status_code == 201, response.text
    return response.json()


async def subsonic_user(api, role: str = "listener") -> tuple[dict, Subsonic]:
    user = await api.user(role)
    created = await app_password(api, user)
    assert created["username"] == user["email"]
    return user, Subsonic(api.http, user["email"], created["password"])


async def seed(pool, owner: dict, *, name: str, albums: dict[str | None, list[tuple[str, str | None]]],
               status: str = "ready") -> dict[str, Any]:
    """An artist with albums of (title, genre) songs; the ``None`` album holds singles. Tracks are made
    ``ready`` through the catalog service (no audio: browsing needs none)."""
    who = Principal(uuid.UUID(owner["id"]), Role(owner.get("role", "artist")))
    artist = await artists.create_artist(pool, who, name=name)
    made: dict[str, Any] = {"artist_id": artist["id"], "albums": {}, "tracks": {}}
    for title, songs in albums.items():
        album_id = None
        if title is not None:
            album = await artists.create_album(pool, who, artist_id=artist["id"], title=title, release_date=None)
            album_id = made["albums"][title] = album["id"]
        for song_title, genre in songs:
            track = await tracks.create_track(pool, who, title=song_title, artist_id=artist["id"], album_id=album_id,
                                              genre=genre, duration_s=61.4, status=status)
            made["tracks"][song_title] = track["id"]
    return made
