"""A little of every kind of traffic against a running VerseFlow, so every exported metric has something.

    .venv/bin/python -m ops.traffic                         # against make up's http://127.0.0.1:8000
    .venv/bin/python -m ops.coverage                        # then: does make observe's Prometheus see it all?

Why: a platform exports a metric only once something happened (no upload, no upload-to-playable
histogram), so checking dashboards on an idle platform finds nothing. This registers an artist and a
listener, chats in a room on both WebSocket transports (Serve's ``/v1/ws`` and the edge), uploads a
rendered song and waits until it is playable, plays it through and saves it, identifies a clip of it,
searches, asks for recommendations, subscribes with Stripe's test card (waiting until the webhooks of
``make up``'s local Stripe server made the subscription active) and asks for a track that does not
exist. Every step must answer as it should; the first that does not stops the run with its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

from audio.synthetic import SongSpec, render, write_audio

RATE = 44_100
PASSWORD = "observe the platform"


def _flac(samples: np.ndarray) -> bytes:
    """(channels, frames) float samples as a FLAC file's bytes."""
    with tempfile.TemporaryDirectory(prefix="verseflow-traffic-") as scratch:
        return write_audio(Path(scratch) / "clip.flac", samples, RATE).read_bytes()


def _ok(response: httpx.Response) -> Any:
    """The JSON body of a successful answer; any other stops the run with it."""
    if not response.is_success:
        raise SystemExit(f"{response.request.method} {response.request.url.path}: "
                         f"{response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


async def _user(http: httpx.AsyncClient, role: str) -> str:
    """A new account's access token."""
    email = f"observe-{role}-{uuid.uuid4().hex[:8]}@example.com"
    _ok(await http.post("/v1/auth/register", json={"email": email, "password": PASSWORD,
                                                   "display_name": f"Observe {role}", "role": role}))
    tokens = _ok(await http.post("/v1/auth/token", data={"username": email, "password": PASSWORD}))
    return tokens["access_token"]


async def _chat(url: str, room: str, sender: str, reader: str, count: int = 5) -> None:
    """Both users (tokens) join ``room`` over ``url``; the reader must receive each of the sender's messages."""
    async with websockets.connect(f"{url}?token={sender}") as a, websockets.connect(f"{url}?token={reader}") as b:
        for ws in (a, b):
            await _next(ws, "ready")
            await ws.send(json.dumps({"type": "join", "room": room}))
            await _next(ws, "joined")
        for i in range(count):
            await a.send(json.dumps({"type": "chat", "room": room, "text": f"observed {i}"}))
        for _ in range(count):
            await _next(b, "chat")


async def _next(ws: websockets.ClientConnection, kind: str) -> dict:
    async with asyncio.timeout(15):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return message
            if message["type"] == "error":
                raise SystemExit(f"websocket error: {message}")


async def _until(http: httpx.AsyncClient, path: str, token: str, done: Callable[[Any], bool], what: str,
                 timeout_s: float) -> None:
    """Poll ``GET path`` until ``done`` says yes of its answer; stop the run after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = _ok(await http.get(path, headers=_auth(token)))
        if done(answer):
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"{what} after {timeout_s:.0f} s: {answer}")


def _playable(track: dict) -> bool:
    if track["status"] == "failed":
        raise SystemExit(f"upload {track['id']} failed")
    return track["status"] == "ready"


async def run(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        owner, listener = await _user(http, "artist"), await _user(http, "listener")
        transports = _ok(await http.get("/v1/realtime", headers=_auth(owner)))  # where clients connect
        artist = _ok(await http.post("/v1/artists", json={"name": f"Observed {uuid.uuid4().hex[:6]}"},
                                     headers=_auth(owner)))
        room = _ok(await http.post("/v1/rooms", json={"name": "Observed", "visibility": "public"},
                                   headers=_auth(owner)))["id"]
        for url in filter(None, (transports["serve"], transports["edge"])):
            await _chat(url, room, owner, listener)
            print(f"chat through {url}: 5 messages delivered")
        song = render(SongSpec(seed=21, bpm=112, tonic="D", mode="minor", seconds=12.0), RATE)
        track = _ok(await http.post("/v1/tracks", data={"title": "Observed", "artist_id": artist["id"]},
                                    files={"file": ("observed.flac", _flac(song), "audio/flac")},
                                    headers=_auth(owner)))["id"]
        await _until(http, f"/v1/tracks/{track}", owner, _playable, f"upload {track} not playable", 300.0)
        print(f"upload {track}: ready")
        play = str(uuid.uuid4())
        for event, position_ms in (("start", 0), ("complete", 12_000)):  # a whole play: a positive interaction
            _ok(await http.post("/v1/plays", json={"track_id": track, "play_id": play, "event": event,
                                                   "position_ms": position_ms}, headers=_auth(listener)))
        _ok(await http.put(f"/v1/me/library/tracks/{track}", headers=_auth(listener)))
        clip = _flac(song[:, 2 * RATE:9 * RATE])
        identified = _ok(await http.post("/v1/fingerprint/identify", headers=_auth(owner),
                                         files={"file": ("clip.flac", clip, "audio/flac")}))
        print(f"identify: {json.dumps(identified)[:120]}")
        _ok(await http.get("/v1/search", params={"q": "Observed"}, headers=_auth(listener)))
        _ok(await http.get("/v1/me/recommendations", headers=_auth(listener)))
        # A subscription with Stripe's test card: Stripe (make up's local server) sends its webhooks.
        _ok(await http.post("/v1/billing/subscription", json={"plan": "premium", "payment_method": "pm_card_visa"},
                            headers=_auth(listener)))
        await _until(http, "/v1/me/subscription", listener,
                     lambda answer: ((answer or {}).get("subscription") or {}).get("status") == "active",
                     "subscription not active (its webhooks not handled)", 60.0)
        for _ in range(50):
            _ok(await http.get("/health"))
        # Clients ask for what is not there too: the API's error metrics (and their panel) see a 404.
        missing = await http.get(f"/v1/tracks/{uuid.uuid4()}", headers=_auth(listener))
        if missing.status_code != 404:
            raise SystemExit(f"a missing track answered {missing.status_code}, not 404")
        print("search, recommendations, a subscription (its webhooks handled), 50 health checks and a 404: answered")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the platform's HTTP address")
    args = parser.parse_args(argv)
    asyncio.run(run(args.url.rstrip("/")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
