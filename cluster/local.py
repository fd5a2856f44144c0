"""The local launcher behind ``make up`` / ``verseflow up``.

Order matters: embedded services first (their URLs go into the environment, which Ray's workers
inherit), then migrations, then Ray in-process, the Serve application and the event worker actor
(outbox relay and consumers). On Ctrl-C or SIGTERM it tears down in reverse: the worker, Serve, Ray
(every worker process it started), the local Stripe server, Redis, PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable

from verseflow import logs
from verseflow.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedStripe, ensure_secret
from verseflow.settings import Settings, get_settings

log = logs.get_logger("launcher")

#: Ray settings ``make up`` applies unless the environment already sets them.
#: Ray starts its workers at nice 15, which suits batch tasks but not API replicas that share two
#: cores with PostgreSQL and the clients: measured with ``bench/api.py`` here, p95 at 200 req/s was
#: 176 ms at nice 15 and 9.6 ms at nice 0. Background actors (transcoding) renice themselves.
RAY_ENVIRONMENT: dict[str, str] = {"RAY_worker_niceness": "0"}


class LocalPlatform:
    """Everything ``make up`` runs, started and stopped as one unit."""

    def __init__(self, settings: Settings, *, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self._stoppers: list[Callable[[], None]] = []

    def start(self) -> None:
        started = time.monotonic()
        self._configure_services()
        self._migrate()
        self._start_ray()
        self._start_serve()
        self._start_workers()
        self.say(f"VerseFlow is up on http://{self.settings.http_host}:{self.settings.http_port} "
                 f"({time.monotonic() - started:.1f}s). Ctrl-C stops it.")
        if not (self.settings.web_dist_dir / "index.html").is_file():
            self.say(f"the web app is not built ({self.settings.web_dist_dir}): `make web` builds it (make up does)")

    def stop(self) -> None:
        while self._stoppers:
            stopper = self._stoppers.pop()
            with contextlib.suppress(Exception):
                stopper()

    def _configure_services(self) -> None:
        var_dir = self.settings.var_dir
        updates: dict[str, str] = {}
        if not self.settings.database_url:
            postgres = EmbeddedPostgres(var_dir / "postgres")
            updates["VERSEFLOW_DATABASE_URL"] = postgres.start()
            self._stoppers.append(postgres.stop)
            self.say(f"embedded PostgreSQL in {var_dir / 'postgres'}")
        if not self.settings.redis_url:
            redis = EmbeddedRedis(var_dir / "redis")
            updates["VERSEFLOW_REDIS_URL"] = redis.start()
            self._stoppers.append(redis.stop)
            self.say(f"embedded Redis in {var_dir / 'redis'}")
        if self.settings.jwt_secret is None:
            updates["VERSEFLOW_JWT_SECRET"] = ensure_secret(var_dir)
        if self.settings.stripe_secret_key is None:
            stripe = EmbeddedStripe(var_dir / "stripe", self.settings.stripe_local_port,
                                    f"http://{self.settings.http_host}:{self.settings.http_port}"
                                    "/v1/billing/stripe/webhook")
            updates.update(stripe.start())
            self._stoppers.append(stripe.stop)
            self.say(f"local Stripe server on {updates['VERSEFLOW_STRIPE_API_BASE']} (state in {var_dir / 'stripe'})")
        os.environ.update(updates)  # inherited by Ray's workers, which read settings from the env
        get_settings.cache_clear()
        self.settings = get_settings()

    def _migrate(self) -> None:
        from verseflow.cli import run_migrations

        applied = asyncio.run(run_migrations(self.settings))
        if applied:
            self.say(f"applied migrations: {', '.join(applied)}")

    def _start_ray(self) -> None:
        import ray

        for name, value in RAY_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        from actors.transcode import SLOT

        local = not self.settings.ray_address
        context = ray.init(
            address=self.settings.ray_address or "local",
            # One transcoding slot per core: jobs queue beyond them while Serve keeps its CPUs.
            resources={SLOT: float(os.cpu_count() or 1)} if local else None,
            include_dashboard=self.settings.ray_dashboard,
            dashboard_host="127.0.0.1",
            _metrics_export_port=self.settings.ray_metrics_port,
            logging_level="WARNING",
            log_to_driver=False,
        )
        self._stoppers.append(ray.shutdown)
        if self.settings.ray_dashboard:
            self.say(f"Ray dashboard on http://{context.dashboard_url}")

    def _start_serve(self) -> None:
        from ray import serve

        from cluster.serve_config import deployment_options
        from serve_deployments.application import APPLICATIONS

        serve.start(http_options={"host": self.settings.http_host, "port": self.settings.http_port})
        options = deployment_options(scaling=self.settings.serve_scaling())
        # One call for every application: their replicas start side by side (one serve.run each waited
        # for the previous application to be running: 26 of the platform's 50 s start here).
        serve.run_many([serve.RunTarget(build(options), name=name, route_prefix=route_prefix)
                        for name, route_prefix, build in APPLICATIONS])
        self._stoppers.append(serve.shutdown)

    def _start_workers(self) -> None:
        from actors import rec_shard
        from actors.event_worker import start_event_worker, stop_event_worker
        from actors.fingerprint_shard import index_unfingerprinted, shards, stop_shards
        from actors.room_host import stop_hosts
        from actors.transcode import resume_open_jobs

        worker = start_event_worker(self.settings)
        self._stoppers.append(lambda: stop_event_worker(worker))
        self._stoppers.append(lambda: stop_hosts(self.settings))
        shards(self.settings)  # they load the landmark index now, not on the first identification
        self._stoppers.append(lambda: stop_shards(self.settings))
        self._stoppers.append(lambda: rec_shard.stop_shards(self.settings))  # made by the first recommendation
        if self.settings.edge_port:
            from actors.edge import start_edges, stop_edges

            edges = start_edges(self.settings)
            self._stoppers.append(lambda: stop_edges(edges))
            self.say(f"realtime edge on {self.settings.edge_host}:{self.settings.edge_port} (GET /v1/realtime)")
        if indexed := asyncio.run(index_unfingerprinted(self.settings)):
            self.say(f"fingerprinted {indexed} track(s) published before the triplet index")
        if resumed := asyncio.run(resume_open_jobs(self.settings)):
            self.say(f"resumed {resumed} unfinished transcoding job(s)")


def run_forever(settings: Settings | None = None) -> None:
    """Start the platform and block until SIGINT/SIGTERM, then stop everything."""
    platform = LocalPlatform(settings or get_settings())
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        platform.start()
        stop.wait()
        print("stopping VerseFlow...")
    finally:
        platform.stop()
        print("stopped.")
