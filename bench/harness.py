"""What every benchmark here needs around its measurement: servers in process groups of their own,
waiting for them, stopping them completely, and a scratch database dropped at the end."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import asyncpg
import psutil

from verseflow import migrations
from verseflow.redis_client import create_redis
from verseflow.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 60.0
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REPLICAS_LINE = "replicas "  # serve_launcher's replica counts: this, then JSON (here: its readers need no Ray)


def admin_url() -> str:
    """The PostgreSQL server benchmarks make their databases on (``VERSEFLOW_DATABASE_URL``'s)."""
    return os.environ.get("VERSEFLOW_DATABASE_URL", DEFAULT_DATABASE_URL)


def run_settings(database: str, tag: str, **overrides: Any) -> Settings:
    """One run's settings: its own ``database`` on :func:`admin_url`'s server, Redis
    (``VERSEFLOW_REDIS_URL``) under a per-run key prefix, a fresh JWT secret. Runs may overlap (tests, CI)."""
    return Settings(
        database_url=urlunparse(urlparse(admin_url())._replace(path="/" + database)),
        redis_url=os.environ.get("VERSEFLOW_REDIS_URL", DEFAULT_REDIS_URL),
        redis_prefix=f"vf{tag}{secrets.token_hex(4)}:", jwt_secret=secrets.token_urlsafe(32), **overrides)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def process_group(name: str, command: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """Run ``command`` in a process group of its own (Ctrl-C reaches only the benchmark, which then
    stops the server in order), its output in ``log_path``."""
    say(f"{name}: starting (output in {log_path.relative_to(ROOT)})")
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            yield process
        finally:
            say(f"{name}: stopping")
            stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGINT first (launchers stop Serve and Ray in order), then SIGKILL to the process group and to
    whatever is left of the tree (Ray's workers live in groups of their own). Not SIGTERM: after
    ``ray.init`` Ray's own SIGTERM handler ends the process without stopping Serve and Ray in order."""
    tree = []
    with contextlib.suppress(psutil.Error):
        tree = psutil.Process(process.pid).children(recursive=True)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for child in tree:
        with contextlib.suppress(psutil.Error):
            child.kill()


class CpuMeter:
    """CPU seconds each part of a running server spends over a window, by role: the launcher, each kind
    of Ray worker by its process title (``ray::ProxyActor`` is ``ProxyActor``), the PostgreSQL backends
    serving ``database``, and this process (the load generator). Divided by the requests of the window,
    it says what a request costs each process, and their sum bounds the rate the machine can carry."""

    def __init__(self, root_pid: int, database: str | None = None) -> None:
        self.root_pid = root_pid
        self.database = database

    def _processes(self) -> list[tuple[str, psutil.Process]]:
        found: list[tuple[str, psutil.Process]] = [("load generator", psutil.Process())]
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.root_pid)
            found.append(("launcher", root))
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    title = (child.cmdline() or [""])[0]
                    if title.startswith("ray::"):
                        found.append((title[5:].split(".")[0].split()[0], child))
                    else:
                        found.append(("Ray system processes", child))
        if self.database:
            marker = f" {self.database} "
            for process in psutil.process_iter(["name", "cmdline"]):
                if process.info["name"] == "postgres" and marker in " ".join(process.info["cmdline"] or ()) + " ":
                    found.append(("PostgreSQL", process))
        return found

    def snapshot(self) -> dict[tuple[str, int], float]:
        seconds = {}
        for role, process in self._processes():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                seconds[(role, process.pid)] = times.user + times.system
        return seconds

    @staticmethod
    def spent(before: dict[tuple[str, int], float], after: dict[tuple[str, int], float]) -> dict[str, float]:
        """CPU seconds per role between two snapshots (a process born in between counts from zero)."""
        roles: dict[str, float] = {}
        for (role, pid), seconds in after.items():
            roles[role] = roles.get(role, 0.0) + seconds - before.get((role, pid), 0.0)
        return dict(sorted(roles.items(), key=lambda item: -item[1]))


def wait_for_line(process: subprocess.Popen, log_path: Path, line: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if line in log_path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{tail(log_path)}")
        time.sleep(0.3)
    raise RuntimeError(f"server did not print {line!r} within {START_TIMEOUT_S:g}s:\n{tail(log_path)}")


def wait_healthy(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{tail(log_path)}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.5)
    raise RuntimeError(f"server not healthy after {START_TIMEOUT_S:g}s:\n{tail(log_path)}")


async def admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def create_database(admin_url: str, database: str, settings: Settings) -> None:
    """A fresh, migrated database for one run (``settings.database_url`` names it)."""
    await admin(admin_url, f"CREATE DATABASE {database}")
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrations.migrate(conn)
    finally:
        await conn.close()


async def clean_up(admin_url: str, settings: Settings, database: str) -> None:
    """Drop the benchmark's database and its Redis keys."""
    await admin(admin_url, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    redis = create_redis(settings)
    try:
        keys = [key async for key in redis.scan_iter(match=settings.redis_prefix + "*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()
