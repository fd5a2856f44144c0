"""The platform side of ``bench/realtime.py``: ``LocalPlatform`` as ``make up`` runs it, until SIGINT.

    VERSEFLOW_DATABASE_URL=... VERSEFLOW_REDIS_URL=... VERSEFLOW_JWT_SECRET=... python -m bench.realtime_launcher

Everything comes from the environment the benchmark sets (``VERSEFLOW_HTTP_PORT``,
``VERSEFLOW_EDGE_PORT``, ``VERSEFLOW_RAY_DASHBOARD=false``, a per-run Redis prefix, a fresh database,
which ``start()`` migrates): migrations, Ray, Serve (REST and ``WS /v1/ws``), the realtime edge
actors and the event worker, exactly what ``cluster.local.run_forever`` starts. Unlike
``bench/serve_launcher.py`` nothing is left out: the realtime path is the edge, its rooms and
sessions, and the stores behind them. Prints ``platform started`` once ``start()`` has returned.

Mirrors ``run_forever``: SIGINT or SIGTERM sets an event, then ``stop()`` tears down in reverse order.
The handlers are installed again after ``start()`` because ``ray.init`` installs its own for SIGTERM.
"""

from __future__ import annotations

import signal
import threading

from cluster.local import LocalPlatform
from verseflow.settings import get_settings


def main() -> None:
    stop = threading.Event()

    def handle(*_: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)
    platform = LocalPlatform(get_settings())
    try:
        platform.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handle)
        print("platform started", flush=True)
        stop.wait()
        print("stopping the platform...", flush=True)
    finally:
        platform.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    main()
