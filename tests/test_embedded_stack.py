"""End to end: `verseflow up` with no database or Redis URL brings up embedded PostgreSQL and Redis
under var/, Ray and Serve; data survives a restart; SIGINT leaves no process behind. `verseflow admin`
finds the same embedded servers: joined while the platform runs, started and stopped while it does not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port

START_TIMEOUT_S = 180


def _environment(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERSEFLOW_")}
    env["VERSEFLOW_VAR_DIR"] = str(var_dir)
    return env


def _launch(var_dir: Path, port: int) -> subprocess.Popen:
    env = _environment(var_dir) | {
        "VERSEFLOW_HTTP_PORT": str(port),
        "VERSEFLOW_RAY_DASHBOARD": "false",
        "VERSEFLOW_RAY_METRICS_PORT": str(free_port()),
        "VERSEFLOW_STRIPE_LOCAL_PORT": str(free_port()),
        "VERSEFLOW_EDGE_PORT": str(free_port()),  # not 8765: another suite's edge may hold it
    }
    return subprocess.Popen([sys.executable, "-m", "verseflow.cli", "up"], env=env, cwd=Path(__file__).parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _admin(var_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """``verseflow admin ...`` with the same environment as the platform: no URLs, the same var/."""
    return subprocess.run([sys.executable, "-m", "verseflow.cli", "admin", *args], env=_environment(var_dir),
                          cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=120)


def _wait_ready(proc: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"verseflow up exited early:\n{proc.stdout.read()}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"not ready within {START_TIMEOUT_S}s:\n{proc.stdout.read()}")


def _stop(proc: subprocess.Popen) -> set[int]:
    """SIGINT the launcher as Ctrl-C would; return the pids of everything it had started.

    A launcher that has already exited (it failed to start) has nothing left to list; the failure that
    made it exit is what the test reports, not a NoSuchProcess from here."""
    try:
        started = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        started = set()
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    proc.wait(timeout=90)
    return started


def _alive(pids: set[int]) -> list[str]:
    alive = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{pid} {' '.join(process.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return alive


def test_make_up_embedded_end_to_end(tmp_path):
    var_dir = tmp_path / "var"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    email = f"embedded-{uuid.uuid4().hex[:8]}@example.com"

    first = _launch(var_dir, port)
    try:
        _wait_ready(first, base)
        ready = httpx.get(f"{base}/ready").json()
        assert ready["checks"] == {"postgres": "ok", "redis": "ok", "ray": "ok"}
        created = httpx.post(f"{base}/v1/auth/register", json={
            "email": email, "password": "embedded password", "display_name": "E", "role": "listener"})
        assert created.status_code == 201
        granted = _admin(var_dir, "grant", email)  # joins the running embedded PostgreSQL and Redis
        assert granted.returncode == 0, granted.stderr
        time.sleep(1.05)  # whole-second iat: sign in after the grant's token cut-off
        login = httpx.post(f"{base}/v1/auth/token", data={"username": email, "password": "embedded password"})
        me = httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
        assert me.json()["role"] == "admin"
        assert httpx.get(f"{base}/ready").status_code == 200  # leaving did not stop the platform's servers
    finally:
        started = _stop(first)
    assert first.returncode == 0, first.stdout.read()
    assert not _alive(started), _alive(started)
    assert not (var_dir / "postgres" / "postmaster.pid").exists()

    listed = _admin(var_dir, "list")  # the platform is down: starts both servers for itself, then stops them
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"{email}\t")
    assert not (var_dir / "postgres" / "postmaster.pid").exists()

    second = _launch(var_dir, port)
    try:
        _wait_ready(second, base)
        login = httpx.post(f"{base}/v1/auth/token", data={"username": email, "password": "embedded password"})
        assert login.status_code == 200  # the account and the JWT secret survived the restart
        me = httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
        assert me.json()["email"] == email
    finally:
        started = _stop(second)
    assert not _alive(started), _alive(started)
