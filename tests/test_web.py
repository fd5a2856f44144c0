"""The web app (web/) in a real browser: Debian's chromium driven by Playwright against the Serve stack.

What a person does, asserted by what they would see or hear: sign up, upload and watch processing
reach ``ready`` through the WebSocket's progress events, play over HLS (time advances, the rung is
shown, the play is recorded), seek on the waveform, search as you type; and two people in a live
room exchanging chat, seeing each other's changes to the shared playlist and notes (the host makes
the guest an editor while both are in the room), and hearing the same moment after the host seeks.
"""

from __future__ import annotations

import asyncio
import gzip
import re
import secrets
import time
import uuid
from datetime import date
from pathlib import Path

import httpx
import pytest

from audio.synthetic import SongSpec, render
from tests.audio_fixtures import write_audio
from tests.web_support import (
    CHROMIUM_ARGS,
    built_web_app,
    chromium_path,
    screenshot,
    serious_accessibility_violations,
    sign_up,
    upload_ready_track,
)

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (make system-deps)"),
    pytest.mark.skipif(not built_web_app(), reason="the web app is not built (make web)"),
]

RATE = 44100
#: Replaces Stripe.js in the browser (this machine cannot reach js.stripe.com); see the file's header.
STRIPE_STANDIN = Path(__file__).parent / "js" / "stripe_standin.js"


@pytest.fixture(scope="module")
def web_url(serve_url, media_url, realtime) -> str:
    """The whole stack a browser needs: API, media, realtime, and the web application at /app."""
    from ray import serve

    from serve_deployments.application import build_web

    serve.run(build_web({"web": {"ray_actor_options": {"num_cpus": 0}}}), name="web", route_prefix="/app")
    return serve_url


@pytest.fixture(scope="module")
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


def song_file(tmp_path_factory, seconds: float, seed: int):
    path = tmp_path_factory.mktemp("web") / f"song-{seed}.flac"
    return write_audio(path, render(SongSpec(seed=seed, seconds=seconds, bpm=110, tonic="D", mode="major"), RATE), RATE)


async def eventually(probe, timeout: float = 30.0, every: float = 0.2):  # noqa: ASYNC109
    """Poll ``probe`` (async, returns a truthy value when satisfied) until it is, or fail with its last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"not satisfied in {timeout} s; last value {last!r}")


def test_the_app_is_served_with_hashed_assets_cached_and_api_prefixes_intact(web_url):
    with httpx.Client(base_url=web_url, timeout=30) as http:
        root = http.get("/")
        assert root.status_code == 307 and root.headers["location"] == "/app/"
        index = http.get("/app/")
        assert index.status_code == 200 and index.headers["cache-control"] == "no-cache"
        assert '<div id="app">' in index.text
        # Client-side routes get the same shell.
        deep = http.get("/app/room/6b0a5e4c-0000-4000-8000-000000000000")
        assert deep.status_code == 200 and deep.text == index.text
        assets = re.findall(r'/app/assets/([A-Za-z0-9_.-]+)', index.text)
        assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
        for name in assets:
            asset = http.get(f"/app/assets/{name}")
            assert asset.status_code == 200
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        # The initial JavaScript (what index.html loads) stays under 200 KB gzipped; hls.js is not in it.
        initial = [a for a in assets if a.endswith(".js")]
        assert not any(a.startswith("hls") for a in initial), initial
        assert sum(len(gzip.compress(http.get(f"/app/assets/{a}").content)) for a in initial) < 200_000
        missing = http.get("/app/assets/nope-123.js")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        # A path that climbs out of the build is just another client route: the shell, never the file.
        climbing = http.get("/app/assets/..%2F..%2Fpyproject.toml")
        assert climbing.text == index.text and "[project]" not in climbing.text
        # The API's prefixes are untouched.
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/openapi.json").status_code == 200
        assert http.get("/v1/me").status_code == 401


async def test_sign_up_upload_play_seek_and_search(web_url, browser, pool, tmp_path_factory):
    path = song_file(tmp_path_factory, 20.0, seed=11)
    title = f"Web upload {uuid.uuid4().hex[:6]}"
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(web_url + "/")
    await page.get_by_role("button", name="Sign in").wait_for()
    assert await serious_accessibility_violations(page) == []
    await screenshot(page, "sign-in")
    await sign_up(page, web_url, role="artist")
    assert await serious_accessibility_violations(page) == []

    # Upload: an artist first, then the file; the progress bars fill from tus and the WebSocket.
    await page.get_by_role("link", name="Upload").click()
    await page.get_by_label("Artist name").fill("The Browser Band")
    await page.get_by_role("button", name="Create artist").click()
    await page.get_by_label("Title").fill(title)
    await page.get_by_label("Audio file").set_input_files(str(path))
    await page.evaluate("""() => {
        window.__progress = [];
        new MutationObserver(() => {
            const bar = document.querySelector('[data-testid=processing]');
            if (bar) window.__progress.push(Number(bar.value));
        }).observe(document.body, {subtree: true, attributes: true, childList: true});
    }""")
    await page.get_by_role("button", name="Upload").click()
    await page.locator("[data-testid=upload-status][data-status=ready]").wait_for(timeout=240_000)
    seen = await page.evaluate("window.__progress")
    # Stages in between came from `notify` events (the fallback poll only ever jumps to 1).
    assert any(0 < v < 1 for v in seen), seen
    assert seen == sorted(seen)
    status = page.get_by_test_id("upload-status")
    await status.get_by_text("BPM").wait_for()
    assert await serious_accessibility_violations(page) == []
    await screenshot(page, "upload")

    # Play: hls.js on the master playlist, time advances, the rung and the normalisation gain show.
    await page.evaluate("""() => { window.__clicked = 0; document.getElementById('vf-audio').addEventListener(
        'playing', () => { window.__audible = performance.now() - window.__clicked; }, {once: true}); }""")
    play = page.get_by_role("button", name="Play it")
    await play.evaluate("b => { window.__clicked = performance.now(); b.click(); }")
    current = "document.getElementById('vf-audio').currentTime"
    await eventually(lambda: page.evaluate(f"{current} > 1.5"))
    print(f"click to playing: {await page.evaluate('window.__audible'):.0f} ms")
    rung = await page.get_by_test_id("rung").inner_text()
    assert re.fullmatch(r"aac(64|128|256)", rung), rung
    assert await page.get_by_test_id("rung").get_attribute("title") == "engine: hls.js"
    assert re.fullmatch(r"[+-]\d+\.\d dB", await page.get_by_test_id("gain").inner_text())

    # Seek: a click at three quarters of the waveform lands near 15 s of 20 s.
    wave = page.get_by_role("slider", name="Seek")
    box = await wave.bounding_box()
    await page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
    position = await eventually(lambda: page.evaluate(f"{current} >= 14 && {current}"))
    assert position < 19.5
    # The keyboard seeks too (5 s back).
    await wave.focus()
    await page.keyboard.press("ArrowLeft")
    assert await page.evaluate(current) < position

    # The plays were reported: start, and complete when the track ended.
    track_id = await _track_id(pool, title)

    async def events():
        rows = await pool.fetch("SELECT event, rung FROM plays WHERE track_id = $1", track_id)
        names = {r["event"] for r in rows}
        return {"start", "complete"} <= names and rows

    rows = await eventually(events, timeout=60)
    assert any(r["rung"] and r["rung"].startswith("aac") for r in rows)

    # Search as you type: the title's first word and a prefix of the second find the track.
    search = page.get_by_role("searchbox", name="Search tracks, artists, albums and playlists")
    await search.press_sequentially(title.split()[0] + " " + title.split()[1][:3], delay=30)
    found = page.get_by_role("list", name="Tracks found").get_by_role("link", name=title)
    await found.wait_for()
    await found.click()
    await page.get_by_role("heading", name=title).wait_for()
    await page.get_by_text("LUFS").wait_for()
    assert await serious_accessibility_violations(page) == []
    await screenshot(page, "track")
    # The library of saved tracks.
    await page.get_by_role("button", name="Save to library").click()
    await page.get_by_role("button", name="Saved to library").wait_for()
    await page.get_by_role("link", name="Library").click()
    await page.get_by_role("list", name="Saved tracks").get_by_role("link", name=title).wait_for()

    # Radio from the track: the seed then its neighbourhood, ready to play.
    await page.goto(f"{web_url}/app/track/{track_id}")
    await page.get_by_role("link", name="Start radio").click()
    await page.get_by_role("heading", name=f"Radio from {title}").wait_for()
    await page.get_by_role("list", name="Radio queue").or_(page.get_by_text("No tracks yet.")).wait_for()
    assert await page.get_by_role("button", name="Play the radio").is_enabled()
    assert await page.get_by_role("alert").count() == 0
    assert await serious_accessibility_violations(page) == []
    # Discover: trending, and breakouts (an artist sees them).
    await page.get_by_role("link", name="Discover").click()
    await page.get_by_role("heading", name="Breakout artists").wait_for()
    await page.get_by_label("Breakout window").select_option("24h")
    breakouts = page.get_by_role("list", name="Breakout artists")
    await breakouts.or_(page.get_by_text("No breakouts in this window.")).wait_for()
    assert await page.get_by_role("alert").count() == 0
    assert await serious_accessibility_violations(page) == []
    await screenshot(page, "discover")

    # Royalty statements, at phone width: a month's run paid this track (a month far ahead: no real run's).
    month, amount = date(2100 + secrets.randbelow(800), 1 + secrets.randbelow(12), 1), 1234
    run_id = await pool.fetchval("""INSERT INTO royalty_runs (id, month, model, currency, pool)
                                    VALUES ($1, $2, 'pro_rata', 'eur', $3) RETURNING id""", uuid.uuid4(), month, amount)
    await pool.execute("""INSERT INTO royalty_lines (run_id, artist_id, track_id, streams, amount)
                          SELECT $1, artist_id, id, 3, $2 FROM tracks WHERE id = $3""", run_id, amount, track_id)
    await page.set_viewport_size({"width": 390, "height": 800})
    await page.get_by_role("link", name="Account").click()
    await page.get_by_role("link", name="Royalty statements").click()
    statement = page.get_by_role("table", name=re.compile(f"{month:%Y-%m}"))
    await statement.get_by_role("link", name=title).wait_for()
    assert "12.34" in await statement.inner_text()
    assert await serious_accessibility_violations(page) == []
    await screenshot(page, "royalties")
    await context.close()


async def _track_id(pool, title: str):
    return await pool.fetchval("SELECT id FROM tracks WHERE title = $1", title)


_TOKEN_IN_URL = re.compile(r"([?&](?:access_)?token=)[^&\s\"']+")


def _redacted(text: str) -> str:
    """A browser message with access tokens in URLs (the WebSocket's ``?token=``) blanked: no token in logs."""
    return _TOKEN_IN_URL.sub(r"\1[redacted]", text)


async def test_two_people_in_a_live_room_chat_and_hear_the_same_moment(web_url, browser, tmp_path_factory):
    title = f"Room song {uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(upload_ready_track, web_url, song_file(tmp_path_factory, 40.0, seed=12), title)
    host_ctx, guest_ctx = await browser.new_context(), await browser.new_context()
    host, guest = await host_ctx.new_page(), await guest_ctx.new_page()
    for who, page in (("host", host), ("guest", guest)):
        page.on("console", lambda msg, who=who: print(who, msg.type, _redacted(msg.text)))
    await sign_up(host, web_url, name="Hosting Hannah")
    await sign_up(guest, web_url, name="Guest Gustav")

    await host.get_by_role("link", name="Rooms").click()
    await host.get_by_label("Room name").fill("Friday listening")
    await host.get_by_role("button", name="Create room").click()
    await host.wait_for_url(re.compile(r"/app/room/[0-9a-f-]{36}$"))
    await eventually(lambda: _text_is(host.get_by_test_id("room-role"), "host"))

    await guest.goto(host.url)
    await guest.get_by_role("heading", name="Friday listening").wait_for()
    await eventually(lambda: _text_is(guest.get_by_test_id("room-role"), "listener"))
    await eventually(lambda: _text_is(host.get_by_test_id("online-count"), "2"))

    # Chat both ways, with the sender's name.
    await guest.get_by_role("textbox", name="Message").fill("hello from the guest")
    await guest.get_by_role("button", name="Send").click()
    host_chat = host.get_by_role("list", name="Chat messages")
    await host_chat.get_by_text("hello from the guest").wait_for()
    assert "Guest Gustav" in await host_chat.inner_text()
    await host.get_by_role("textbox", name="Message").fill("welcome!")
    await host.get_by_role("button", name="Send").click()
    guest_chat = guest.get_by_role("list", name="Chat messages")
    await guest_chat.get_by_text("welcome!").wait_for()

    # The guest's socket drops: what was said meanwhile arrives once, and what the guest sent while
    # offline is delivered once after the reconnect (the same `ref`).
    await guest.evaluate("verseflow.realtime.drop(2000)")
    await guest.get_by_role("textbox", name="Message").fill("sent while offline")
    await guest.get_by_role("button", name="Send").click()
    for n in range(3):
        await host.get_by_role("textbox", name="Message").fill(f"missed {n}")
        await host.get_by_role("button", name="Send").click()
    await guest_chat.get_by_text("missed 2").wait_for()
    await host_chat.get_by_text("sent while offline").wait_for()
    def said(chat, text: str):
        return chat.get_by_role("listitem").filter(has_text=re.compile(f": {text}$"))

    for n in range(3):
        assert await said(guest_chat, f"missed {n}").count() == 1
    assert await said(host_chat, "sent while offline").count() == 1
    await said(guest_chat, "sent while offline").wait_for()
    assert await said(guest_chat, "sent while offline").count() == 1
    assert await guest.evaluate("verseflow.realtime.opened") == 2  # one reconnect, and it resumed
    # Opening the room again shows its history, each message once.
    await guest.reload()
    await said(guest_chat, "missed 2").wait_for()
    for text in ("hello from the guest", "welcome!", "missed 0", "sent while offline"):
        assert await said(guest_chat, text).count() == 1, text
    await eventually(lambda: _text_is(guest.get_by_test_id("room-role"), "listener"))
    # A long history opens on its newest page and reads back on demand (pages of 3 here, 50 in use).
    await guest.evaluate("verseflow.realtime.historyPageSize = 3")
    await guest.get_by_role("link", name="Rooms").click()
    await guest.go_back()
    older = guest.get_by_role("button", name="Load older messages")
    await older.wait_for()
    newest = await guest_chat.get_by_role("listitem").all_inner_texts()
    assert len(newest) == 3 and not any("hello from the guest" in t for t in newest), newest
    await older.click()  # the three before them, which include the first: nothing older is left
    await eventually(lambda: _more_than(guest_chat.get_by_role("listitem"), 5), timeout=10)
    await older.wait_for(state="detached")
    everything = await guest_chat.get_by_role("listitem").all_inner_texts()
    assert len(everything) == 6 and everything[-3:] == newest, everything

    # The room's shared document (Yjs): the host's playlist and notes edits reach the guest live.
    await host.get_by_label("Find a track to play for the room").press_sequentially(title, delay=20)
    await host.get_by_role("button", name=f"Add “{title}” to the room playlist").click()
    await guest.get_by_role("list", name="Room playlist").get_by_text(title).wait_for()
    await host.get_by_label("Room notes").press_sequentially("bring snacks", delay=10)
    async def guest_notes():
        return await guest.get_by_label("Room notes").input_value() == "bring snacks"

    await eventually(guest_notes)
    assert not await guest.get_by_label("Room notes").is_editable()  # a listener reads, the host writes

    # The host makes the guest an editor (by keyboard): the guest's page turns editable at once,
    # without rejoining, the guest adds to the room playlist and the host sees it.
    await host.get_by_role("button", name="Make editor: Guest Gustav").focus()
    await host.keyboard.press("Enter")
    await guest.get_by_text("The host made you an editor").wait_for()
    assert (await guest.get_by_test_id("room-role").inner_text()).strip() == "editor"
    assert await guest.get_by_label("Room notes").is_editable()
    await guest.get_by_label("Find a track for the room playlist").press_sequentially(title, delay=20)
    await guest.get_by_role("button", name=f"Add “{title}” to the room playlist").click()
    host_playlist = host.get_by_role("list", name="Room playlist").get_by_role("listitem")
    await eventually(lambda: _more_than(host_playlist, 1), timeout=10)
    assert await host_playlist.filter(has_text=title).count() == 2
    # And back: a listener again, the guest's page is read-only at once.
    await host.get_by_role("button", name="Make listener: Guest Gustav").click()
    await guest.get_by_text("You are a listener now").wait_for()
    assert not await guest.get_by_label("Room notes").is_editable()
    assert await guest.get_by_label("Find a track for the room playlist").count() == 0

    # An editor again, the guest is made a listener while their chat socket is down, so the `role`
    # event passes them by: what they type meanwhile is refused by the room, and their rejoin turns
    # the page read-only and drops it.
    await host.get_by_role("button", name="Make editor: Guest Gustav").click()
    await guest.get_by_text("The host made you an editor").wait_for()
    warnings: list[str] = []
    guest.on("console", lambda msg: warnings.append(msg.text) if msg.type == "warning" else None)
    await guest.evaluate("verseflow.realtime.drop(60000)")  # back when the test says so
    async with httpx.AsyncClient(base_url=web_url) as http:
        guest_id = (await http.get("/v1/me", headers=await _bearer(guest))).json()["id"]
        room_id = host.url.rsplit("/", 1)[1]
        response = await http.put(f"/v1/rooms/{room_id}/members/{guest_id}", json={"role": "listener"},
                                  headers=await _bearer(host))
        assert response.status_code == 200, response.text
    notes = guest.get_by_label("Room notes")
    assert await notes.is_editable()  # the guest has not heard yet
    await notes.press_sequentially(" oops", delay=10)
    assert "oops" in await notes.input_value()
    await eventually(lambda: _said_permission_denied(warnings), timeout=10)  # y-websocket reports the refusal
    await guest.evaluate("verseflow.realtime.connect()")
    await guest.get_by_text("You are a listener now").wait_for()
    assert not await notes.is_editable()
    await eventually(guest_notes, timeout=10)
    assert await host.get_by_label("Room notes").input_value() == "bring snacks"

    # The host plays a track for the room; the guest's player follows.
    await host.get_by_role("button", name=f"Play “{title}” for the room").click()
    current = "document.getElementById('vf-audio').currentTime"
    await eventually(lambda: guest.evaluate(f"{current} > 1"), timeout=60)

    # The host seeks to about 25 s; within a few seconds both hear the same moment (< 250 ms apart).
    wave = host.get_by_role("slider", name="Seek")
    box = await wave.bounding_box()
    await host.mouse.click(box["x"] + box["width"] * 0.625, box["y"] + box["height"] / 2)

    async def gap() -> float | None:
        """How far apart the two players are now (None while either is paused or before the seek)."""
        a = await host.evaluate(f"[{current}, Date.now(), document.getElementById('vf-audio').paused]")
        b = await guest.evaluate(f"[{current}, Date.now(), document.getElementById('vf-audio').paused]")
        host_at_b = a[0] + (b[1] - a[1]) / 1000  # both clocks are this machine's
        return abs(host_at_b - b[0]) if a[0] > 20 and not a[2] and not b[2] else None

    async def together():
        now = await gap()
        return now is not None and now < 0.25

    await eventually(together, timeout=30)
    # And they stay together: a second of samples, every one under 250 ms.
    samples = []
    for _ in range(5):
        samples.append(await gap())
        await asyncio.sleep(0.25)
    print("host and guest apart after the seek (ms):", [round(g * 1000) for g in samples if g is not None])
    assert all(g is not None and g < 0.25 for g in samples), samples
    for page in (host, guest):
        assert await serious_accessibility_violations(page) == []
    await screenshot(guest, "room")
    await host_ctx.close()
    await guest_ctx.close()


async def _bearer(page) -> dict[str, str]:
    """The Authorization header of whoever is signed in on ``page``."""
    token = await page.evaluate("JSON.parse(localStorage.getItem('verseflow.tokens')).access_token")
    return {"authorization": f"Bearer {token}"}


async def _said_permission_denied(warnings: list[str]) -> bool:
    return any("Permission denied" in w for w in warnings)


async def _more_than(locator, count: int) -> bool:
    return await locator.count() > count


async def _text_is(locator, expected: str) -> bool:
    return (await locator.inner_text()).strip() == expected


async def test_a_playlist_is_built_and_reordered_by_keyboard_and_by_drag_and_drop(web_url, browser, tmp_path_factory):
    titles = [f"List {letter} {uuid.uuid4().hex[:4]}" for letter in "ABC"]
    tracks = await asyncio.gather(*(
        asyncio.to_thread(upload_ready_track, web_url, song_file(tmp_path_factory, 6.0, seed=20 + i), title)
        for i, title in enumerate(titles)))
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await sign_up(page, web_url)
    await page.get_by_role("link", name="Playlists").click()
    await page.get_by_label("Playlist name").fill("Road trip")
    await page.get_by_role("button", name="Create playlist").click()
    await page.get_by_role("heading", name="Road trip").wait_for()
    playlist_url = page.url

    for track in tracks:
        await page.goto(f"{web_url}/app/track/{track['id']}")
        await page.get_by_role("button", name="Add to playlist").click()
        await page.get_by_role("status").get_by_text("Added to Road trip").wait_for()

    rows = page.get_by_role("list", name="Playlist tracks")

    async def order():
        await page.goto(playlist_url)  # what the server stored, not what the page shows
        await rows.get_by_role("link").first.wait_for()
        return await rows.get_by_role("link").all_inner_texts()

    assert await order() == titles
    # Collaborators: the owner finds Carla by a word of her name in the picker (keyboard: type, ↓, Enter),
    # sees her listed; Carla, in her own browser, reorders by keyboard; the owner removes her again.
    tag = uuid.uuid4().hex[:6]
    friend_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    friend = await friend_ctx.new_page()
    await sign_up(friend, web_url, name=f"Carla Collab{tag}")
    picker = page.get_by_role("combobox", name="Add a collaborator by name")
    await picker.press_sequentially(f"collab{tag[:3]}", delay=20)
    found = page.get_by_role("listbox", name=re.compile("people found"))
    option = found.get_by_role("option", name=f"Carla Collab{tag}")
    await option.wait_for()
    await picker.press("ArrowDown")
    assert await option.get_attribute("aria-selected") == "true"
    assert await picker.get_attribute("aria-activedescendant") == await option.get_attribute("id")
    assert await serious_accessibility_violations(page) == []
    await screenshot(page, "playlist")
    await picker.press("Enter")
    await page.get_by_role("list", name="Collaborators").get_by_text(f"Carla Collab{tag}").wait_for()
    # Keyboard, by the collaborator: focus A and move it down one.
    await friend.goto(playlist_url)
    friend_rows = friend.get_by_role("list", name="Playlist tracks")
    await friend_rows.get_by_role("listitem").nth(0).focus()
    await friend.keyboard.press("Alt+ArrowDown")
    await friend.get_by_text(f"{titles[0]} moved to position 2 of 3").wait_for(state="attached")
    assert await friend.get_by_role("alert").count() == 0
    assert await order() == [titles[1], titles[0], titles[2]]
    await page.get_by_role("button", name=f"Remove Carla Collab{tag}").click()
    await page.get_by_text("Only the owner edits this playlist.").wait_for()
    # Drag and drop: C onto the first row.
    await rows.get_by_role("listitem").nth(2).drag_to(rows.get_by_role("listitem").nth(0))
    await page.get_by_text(f"{titles[2]} moved to position 1 of 3").wait_for(state="attached")
    assert await order() == [titles[2], titles[1], titles[0]]

    # Account: an app password made here works for a Subsonic app at /rest/.
    await page.get_by_role("link", name="Account").click()
    await page.get_by_label("New app password name").fill("My phone")
    await page.get_by_role("button", name="Create").click()
    password = await page.get_by_test_id("app-password").inner_text()
    await page.get_by_role("list", name="App passwords").get_by_text("My phone").wait_for()
    email = await page.locator("form.card p.muted").inner_text()
    async with httpx.AsyncClient(base_url=web_url, timeout=30) as http:
        ping = await http.get("/rest/ping", params={"u": email.split(" · ")[0], "p": password, "v": "1.16.1",
                                             "c": "test", "f": "json"})
    assert ping.json()["subsonic-response"]["status"] == "ok", ping.text

    # Subscription at phone width, with the local Stripe server's test card: subscribe, cancel at the
    # period's end, resume, move to the family plan and invite someone to a seat.
    await page.set_viewport_size({"width": 390, "height": 800})
    await page.get_by_role("link", name="Subscription and family plan").click()
    await page.get_by_role("button", name="Subscribe").wait_for()
    assert await _text_is(page.get_by_test_id("plan"), "Free")
    assert await serious_accessibility_violations(page) == []
    await page.get_by_label("Test card").select_option("pm_card_chargeDeclined")
    await page.get_by_role("button", name="Subscribe").click()
    await page.get_by_role("alert").get_by_text("Payment declined").wait_for()
    await page.get_by_label("Test card").select_option("pm_card_visa")
    await page.get_by_role("button", name="Subscribe").click()
    await eventually(lambda: _text_is(page.get_by_test_id("plan"), "Premium"))
    status = page.get_by_test_id("subscription-status")
    await page.get_by_role("button", name="Cancel subscription").click()
    await status.get_by_text("Cancelled").wait_for()
    await page.get_by_role("button", name="Resume subscription").click()
    await status.get_by_text("renews").wait_for()
    await page.get_by_role("button", name="Switch to Family").click()
    await eventually(lambda: _text_is(page.get_by_test_id("plan"), "Family"))
    await page.get_by_role("button", name="Create an invitation").click()
    code = await page.get_by_test_id("family-code").inner_text()
    assert len(code) >= 16
    assert await serious_accessibility_violations(page) == []
    await screenshot(page, "subscription")

    # The family, in two browsers: Carla joins with the code by keyboard, the owner sees her take a seat
    # and removes her by mouse; she joins again with a new code, then leaves by keyboard.
    seats = page.get_by_test_id("seats")
    carla_plan = friend.get_by_test_id("plan")
    await friend.get_by_role("link", name="Account").click()
    await friend.get_by_role("link", name="Subscription and family plan").click()
    await _join_family(friend, code)
    await friend.get_by_text(re.compile(r"You are in .+'s family")).wait_for()
    await eventually(lambda: _text_is(carla_plan, "Family"))
    assert await friend.get_by_role("button", name="Subscribe").count() == 0  # the family's plan is hers now
    assert await serious_accessibility_violations(friend) == []
    await page.reload()
    await page.get_by_role("list", name="Family members").get_by_text(f"Carla Collab{tag}").wait_for()
    assert await _text_is(seats, "2 of 6")
    await page.get_by_role("button", name=f"Remove Carla Collab{tag}").click()
    confirm = page.get_by_role("button", name=f"Yes, remove Carla Collab{tag}")
    assert await confirm.evaluate("b => b === document.activeElement")
    await page.keyboard.press("Escape")  # changed her mind: nothing happens
    await confirm.wait_for(state="detached")
    assert await _text_is(seats, "2 of 6")
    await page.get_by_role("button", name=f"Remove Carla Collab{tag}").click()
    await confirm.click()
    await eventually(lambda: _text_is(seats, "1 of 6"))
    removed = page.get_by_role("status").get_by_text(f"Carla Collab{tag} was removed from the family.")
    await removed.wait_for(state="attached")
    await friend.reload()
    await eventually(lambda: _text_is(carla_plan, "Free"))
    await page.get_by_role("button", name="Create an invitation").click()
    await eventually(lambda: _code_changed(page, code))
    await _join_family(friend, await page.get_by_test_id("family-code").inner_text())
    await eventually(lambda: _text_is(carla_plan, "Family"))
    await friend.get_by_role("button", name="Leave the family").focus()
    await friend.keyboard.press("Enter")
    await eventually(lambda: friend.evaluate("document.activeElement.textContent === 'Yes, leave the family'"))
    await friend.keyboard.press("Enter")
    await friend.get_by_label("Family invitation code").wait_for()
    await eventually(lambda: _text_is(carla_plan, "Free"))
    await page.reload()
    await eventually(lambda: _text_is(seats, "1 of 6"))
    await friend_ctx.close()
    await context.close()


async def test_subscribing_with_stripes_payment_element(web_url, browser):
    """With a publishable key the page takes cards through Stripe's Payment Element on a SetupIntent.

    js.stripe.com cannot be reached from this machine, so Playwright routes it to a stand-in script
    (tests/js/stripe_standin.js) that implements only the calls our page makes; what is checked is our
    side: Stripe.js loaded on demand, once; the element created with the server's client secret; a
    decline shown and nothing subscribed; a saved card subscribing through the local Stripe server."""
    context = await browser.new_context(viewport={"width": 390, "height": 800})
    loaded: list[str] = []

    async def stand_in(route):
        loaded.append(route.request.url)
        await route.fulfill(path=STRIPE_STANDIN, content_type="application/javascript")

    await context.route("https://js.stripe.com/**", stand_in)
    page = await context.new_page()
    await sign_up(page, web_url)
    await page.get_by_role("link", name="Account").click()
    await page.get_by_role("link", name="Subscription and family plan").click()
    await page.get_by_role("button", name="Subscribe").wait_for()
    assert loaded == []  # neither the app nor the page in test mode loads Stripe.js before the card form
    async with page.expect_response("**/v1/billing/setup-intent") as opened:
        await page.get_by_label("Card form (Stripe's Payment Element)").check()
    secret = (await (await opened.value).json())["client_secret"]
    card = page.get_by_role("group", name="Card details").get_by_label("Card number")
    await card.wait_for()
    assert loaded == ["https://js.stripe.com/v3/"]
    standin = await page.evaluate("window.__stripeStandIn")
    assert standin["keys"] == ["pk_test_verseflow_standin"] and standin["created"] == ["payment"]
    assert [o["clientSecret"] for o in standin["elementsOptions"]] == [secret]
    assert await serious_accessibility_violations(page) == []

    await card.fill("4000 0000 0000 0002")  # Stripe's declined test card
    await page.get_by_role("button", name="Subscribe").click()
    await page.get_by_role("alert").get_by_text("Payment declined: Your card was declined.").wait_for()
    assert await _text_is(page.get_by_test_id("plan"), "Free")
    await card.fill("4242 4242 4242 4242")
    await page.get_by_role("button", name="Subscribe").click()
    await eventually(lambda: _text_is(page.get_by_test_id("plan"), "Premium"))
    calls = (await page.evaluate("window.__stripeStandIn"))["confirmCalls"]
    assert [(c["clientSecret"], c["redirect"]) for c in calls] == [(secret, "if_required")] * 2
    assert loaded == ["https://js.stripe.com/v3/"]
    await context.close()


async def _join_family(page, code: str) -> None:
    """Type the invitation code and press Enter, as someone without a mouse would."""
    field = page.get_by_label("Family invitation code")
    await field.fill(code)
    await field.press("Enter")
    await page.get_by_role("status").get_by_text(re.compile(r"You joined .+'s family\.")).wait_for(state="attached")


async def _code_changed(page, old: str) -> bool:
    return (await page.get_by_test_id("family-code").inner_text()) not in ("", old)

