"""Helpers for the web app's end-to-end tests: the system chromium under Playwright, sign-up through the UI."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import httpx

#: Debian's chromium (installed by `make system-deps`); Playwright's own browser download is not used.
CHROMIUM_ARGS = ["--autoplay-policy=no-user-gesture-required", "--no-sandbox", "--mute-audio"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return None


def built_web_app() -> bool:
    from verseflow.settings import get_settings

    return (Path(get_settings().web_dist_dir) / "index.html").is_file()


async def sign_up(page, base: str, *, role: str = "listener", name: str | None = None) -> str:
    """Sign up through the form; returns the email. Lands on the home page, signed in."""
    email = f"web-{uuid.uuid4().hex[:10]}@example.com"
    await page.goto(base + "/")
    await page.get_by_role("button", name="Create an account").click()
    await page.get_by_label("Display name").fill(name or f"User {email[4:10]}")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill("a long enough password")
    if role == "artist":
        await page.get_by_label("I am an artist").check()
    await page.get_by_role("button", name="Sign up").click()
    await page.get_by_role("heading", name="Welcome").wait_for()
    return email


def upload_ready_track(base: str, path: Path, title: str, timeout_s: float = 240) -> dict:
    """An artist, and a track of theirs uploaded over HTTP and processed to ``ready`` (for the room tests)."""
    with httpx.Client(base_url=base, timeout=60) as http:
        email = f"web-artist-{uuid.uuid4().hex[:8]}@example.com"
        assert http.post("/v1/auth/register", json={"email": email, "password": "a long enough password",
                                                    "display_name": "Room Artist", "role": "artist"}).status_code == 201
        token = http.post("/v1/auth/token", data={"username": email, "password": "a long enough password"}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        artist = http.post("/v1/artists", json={"name": f"Band {uuid.uuid4().hex[:6]}"}, headers=headers).json()
        accepted = http.post("/v1/tracks", data={"title": title, "artist_id": artist["id"]},
                             files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
                             headers=headers)
        assert accepted.status_code == 202, accepted.text
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            track = http.get(f"/v1/tracks/{accepted.json()['id']}", headers=headers).json()
            if track["status"] in ("ready", "failed"):
                assert track["status"] == "ready", track
                return track
            time.sleep(0.5)
        raise AssertionError(f"track still {track['status']}")


AXE = Path(__file__).parents[1] / "web" / "node_modules" / "axe-core" / "axe.min.js"


async def serious_accessibility_violations(page) -> list[dict]:
    """axe-core (web/'s devDependency) on the page as it is: the serious and critical violations."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["html"][:120] for n in v["nodes"][:3]]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


async def screenshot(page, name: str) -> None:
    """With VERSEFLOW_SCREENSHOTS set (a folder), keep this screen at desktop and phone width (docs/)."""
    folder = os.environ.get("VERSEFLOW_SCREENSHOTS")
    if not folder:
        return
    size = page.viewport_size
    for label, width, height in (("desktop", 1280, 800), ("phone", 390, 844)):
        await page.set_viewport_size({"width": width, "height": height})
        await page.wait_for_timeout(300)
        await page.screenshot(path=str(Path(folder) / f"{name}-{label}.png"))
    if size:
        await page.set_viewport_size(size)
