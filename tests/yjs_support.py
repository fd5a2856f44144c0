"""Yjs test peers: stock yjs + y-websocket clients (tests/js/yjs_peer.mjs) for any Yjs endpoint, and
:class:`FakeClient`, a pycrdt client reduced to the protocol, for tests that hand frames over themselves.

Why node and not pycrdt on the client side too: a Python client would share our reading of the
protocol, mistakes included; the npm packages browsers run are the reference. Used by the test
server in test_yjs.py and by the gateway's end-to-end tests alike, so nothing here knows either.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Collection
from pathlib import Path

import pytest
from pycrdt import (
    Array,
    Awareness,
    Doc,
    Text,
    create_awareness_message,
    create_update_message,
    handle_sync_message,
    read_message,
)

JS_DIR = Path(__file__).parent / "js"
PEER_SCRIPT = JS_DIR / "yjs_peer.mjs"


def ensure_node_modules() -> None:
    """Install the pinned npm packages unless node_modules is at least as new as package-lock.json.

    Skips the calling test only when node itself is missing; a failing install is an error.
    """
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH")
    lock = JS_DIR / "package-lock.json"
    installed = JS_DIR / "node_modules" / ".package-lock.json"  # npm writes it last when installing
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("node is installed but npm is not: cannot install tests/js/node_modules")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm ci failed in {JS_DIR}:\n{done.stdout}\n{done.stderr}")


async def run_peers(
    url: str,
    room_id: str,
    tokens: list[str],
    timeout: float = 60,  # noqa: ASYNC109 - also bounds each peer's own wait, so it is a plain number
    *,
    names: list[str] | None = None,
    expect_peers: int | None = None,
    expect_tracks: int | None = None,
    readonly: Collection[int] = (),
    denied: Collection[int] = (),
) -> list[dict]:
    """Run one yjs_peer.mjs per token at once against `url` (e.g. ws://127.0.0.1:8000/v1/yjs).

    Each peer adds its name to the playlist and notes (unless its index is in `readonly`) and
    waits for `expect_tracks` playlist entries (default: one per writing peer) and `expect_peers`
    awareness users (default: all peers). A peer in `denied` is one the server refuses: it edits
    anyway and also waits for the stock client to report permission denied (its
    ``"permission_denied"`` lists the reasons). Returns each peer's final JSON, in token order;
    raises AssertionError with every peer's stderr if any fails or the whole run exceeds `timeout`.
    """
    ensure_node_modules()
    names = names or [f"peer{i}" for i in range(len(tokens))]
    expect_peers = len(tokens) if expect_peers is None else expect_peers
    expect_tracks = len(tokens) - len(readonly) - len(denied) if expect_tracks is None else expect_tracks
    peer_timeout = max(5.0, min(20.0, timeout * 0.75))  # let peers report their state before we kill them
    procs = []
    for i, (token, name) in enumerate(zip(tokens, names, strict=True)):
        args = ["--url", url, "--room", str(room_id), "--token", token, "--name", name,
                "--expect-peers", str(expect_peers), "--expect-tracks", str(expect_tracks),
                "--timeout", str(peer_timeout)]
        if i in readonly:
            args.append("--readonly")
        if i in denied:
            args.append("--denied")
        procs.append(await asyncio.create_subprocess_exec(
            "node", str(PEER_SCRIPT), *args, cwd=JS_DIR,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE))
    talks = [asyncio.ensure_future(proc.communicate()) for proc in procs]
    try:
        _, running = await asyncio.wait(talks, timeout=timeout)
    finally:
        for proc in procs:  # on timeout, and if the calling test is cancelled
            if proc.returncode is None:
                proc.kill()
    outputs = await asyncio.gather(*talks)
    if running:
        errors = "\n".join(f"{name}: {err.decode().strip()}" for name, (_, err) in zip(names, outputs, strict=True))
        raise AssertionError(f"yjs peers still running after {timeout} s; stderr:\n{errors}")
    failures = [
        f"{name} exited {proc.returncode}: {err.decode().strip()}"
        for name, proc, (_, err) in zip(names, procs, outputs, strict=True)
        if proc.returncode != 0
    ]
    if failures:
        raise AssertionError("yjs peers failed:\n" + "\n".join(failures))
    return [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]


class FakeClient:
    """A y-websocket client reduced to its protocol: a pycrdt Doc and Awareness."""

    def __init__(self, conn_id: str, *, can_write: bool = True, doc: Doc | None = None) -> None:
        self.conn_id = conn_id
        self.can_write = can_write
        self.doc = doc or Doc()
        self.playlist = self.doc.get("playlist", type=Array)
        self.notes = self.doc.get("notes", type=Text)
        self.awareness = Awareness(self.doc)
        self.denied: list[str] = []  # reasons of the permission-denied messages received, as y-websocket reports them

    def handle(self, frame: bytes) -> list[bytes]:
        """Apply a frame from the server; frames to send back (step 2 answering a step 1)."""
        if frame[0] == 2:  # y-protocols/auth.js readAuthMessage: [2, 0 = permission denied, varString reason]
            assert frame[1] == 0, frame
            self.denied.append(read_message(frame[2:]).decode())
            return []
        if frame[0] == 0:
            reply = handle_sync_message(frame[1:], self.doc)  # takes [step, ...], returns a whole [0, 1, ...] frame
            return [reply] if reply else []
        if frame[0] == 1:
            self.awareness.apply_awareness_update(read_message(frame[1:]), "server")
            return []
        raise AssertionError(f"unexpected frame {frame!r}")

    def edit(self, name: str) -> bytes:
        """Add a track and a note locally, like the node peer; the update frame to send."""
        before = self.doc.get_state()
        with self.doc.transaction():
            self.playlist.append({"track": name})
            self.notes += f"{name};"
        return create_update_message(self.doc.get_update(before))

    def announce(self, state: dict | None) -> bytes:
        self.awareness.set_local_state(state)
        return create_awareness_message(self.awareness.encode_awareness_update([self.doc.client_id]))

    def to_json(self) -> dict:
        return {"playlist": self.playlist.to_py(), "notes": str(self.notes)}
