"""A little of every kind of traffic against a running VerseFlow, so every exported metric has something.

    .venv/bin/python -m ops.traffic                         # against make up's http://127.0.0.1:8000
    .venv/bin/python -m ops.coverage                        # then: does make observe's Prometheus see it all?

Why: a platform exports a metric only once something happened (no upload, no upload-to-playable
histogram), so checking dashboards on an idle platform finds nothing. This registers an artist and a
listener, chats in a room on both WebSocket transports (Serve's ``/v1/ws`` and the edge), uploads a
rendered song and waits until it is playable, plays it through and saves it, identifies a clip of it, searches, asks
for recommendations and subscribes with Stripe's test card, waiting until Stripe's webhooks (``make up``'s
local Stripe server sends them) made the subscription active. Every step must succeed; the first that
does not stops the run with its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
import uuid
import wave
from typing import Any

import httpx
import numpy as np
import websockets

from audio.synthetic import SongSpec, render

RATE = 44_100
PASSWORD = "observe the platform"


def _wav(samples: np.ndarray) -> bytes:
    """16-bit PCM WAV of (channels, frames) float samples."""
    pcm = (np.clip(samples.T, -1.0, 1.0) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(samples.shape[0])
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def _ok(response: httpx.Response, *codes: int) -> Any:
    if response.status_code not in (codes or (200, 201, 202, 204)):
        raise SystemExit(f"{response.request.method} {response.request.url.path}: "
                         f"{response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


async def _user(http: httpx.AsyncClient, role: str) -> dict[str, str]:
    email = f"observe-{role}-{uuid.uuid4().hex[:8]}@example.com"
    _ok(await http.post("/v1/auth/register", json={"email": email, "password": PASSWORD,
                                                   "display_name": f"Observe {role}", "role": role}))
    tokens = _ok(await http.post("/v1/auth/token", data={"username": email, "password": PASSWORD}))
    return {"token": tokens["access_token"], "Authorization": f"Bearer {tokens['access_token']}"}


async def _chat(url: str, room: str, sender: dict, reader: dict, count: int = 5) -> None:
    """Both users join ``room`` over ``url``; the reader must receive each of the sender's messages."""
    async with websockets.connect(f"{url}?token={sender['token']}") as a, \
            websockets.connect(f"{url}?token={reader['token']}") as b:
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


async def _wait_premium(http: httpx.AsyncClient, user: dict, timeout_s: float = 60.0) -> None:
    """Until the webhooks made the subscription active (the platform learns it from them)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        subscription = _ok(await http.get("/v1/me/subscription", headers=_auth(user)))
        if ((subscription or {}).get("subscription") or {}).get("status") == "active":
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"subscription not active after {timeout_s:.0f} s: {subscription}")


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
                                    files={"file": ("observed.wav", _wav(song), "audio/wav")},
                                    headers=_auth(owner)))["id"]
        status = await _wait_ready(http, track, owner)
        print(f"upload {track}: {status}")
        play = str(uuid.uuid4())
        for event, position_ms in (("start", 0), ("complete", 12_000)):  # a whole play: a positive interaction
            _ok(await http.post("/v1/plays", json={"track_id": track, "play_id": play, "event": event,
                                                   "position_ms": position_ms}, headers=_auth(listener)))
        _ok(await http.put(f"/v1/me/library/tracks/{track}", headers=_auth(listener)))
        clip = _wav(song[:, 2 * RATE:9 * RATE])
        identified = _ok(await http.post("/v1/fingerprint/identify", files={"file": ("clip.wav", clip, "audio/wav")},
                                         headers=_auth(owner)))
        print(f"identify: {json.dumps(identified)[:120]}")
        _ok(await http.get("/v1/search", params={"q": "Observed"}, headers=_auth(listener)))
        _ok(await http.get("/v1/me/recommendations", headers=_auth(listener)))
        # A subscription with Stripe's test card: Stripe (make up's local server) sends its webhooks.
        _ok(await http.post("/v1/billing/subscription", json={"plan": "premium", "payment_method": "pm_card_visa"},
                            headers=_auth(listener)))
        await _wait_premium(http, listener)
        for _ in range(50):
            _ok(await http.get("/health"))
        print("search, recommendations, a subscription (its webhooks handled) and 50 health checks: answered")


def _auth(user: dict[str, str]) -> dict[str, str]:
    return {"Authorization": user["Authorization"]}


async def _wait_ready(http: httpx.AsyncClient, track: str, owner: dict, timeout_s: float = 300.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _ok(await http.get(f"/v1/tracks/{track}", headers=_auth(owner)))["status"]
        if status in ("ready", "failed"):
            if status == "failed":
                raise SystemExit(f"upload {track} failed")
            return status
        await asyncio.sleep(0.5)
    raise SystemExit(f"upload {track} not playable after {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the platform's HTTP address")
    args = parser.parse_args(argv)
    asyncio.run(run(args.url.rstrip("/")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
