"""The Serve side of ``bench/api.py``: a local Ray and the API application, until SIGINT.

    python -m bench.serve_launcher PORT REPLICAS

Not ``verseflow up``, for two reasons: its autoscaling (``cluster/serve_config.yaml``, up to 8
replicas) starts replica after replica once the open loop saturates two cores (four within 20 s,
seen while writing this benchmark), which only adds processes competing for them; and its event
worker does work the uvicorn baseline does not. So the API deployment keeps its configured options except
autoscaling, with a fixed replica count instead, and nothing else runs.
"""

from __future__ import annotations

import os
import signal
import sys

import ray
from ray import serve

from cluster.local import RAY_ENVIRONMENT
from cluster.serve_config import deployment_options
from serve_deployments.application import build


def main(port: int, replicas: int) -> None:
    # Ctrl-C semantics even when started from a shell that ignores SIGINT in background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name, value in RAY_ENVIRONMENT.items():  # measure what `make up` runs
        os.environ.setdefault(name, value)
    options = {k: v for k, v in deployment_options()["api"].items() if k != "autoscaling_config"}
    ray.init(address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build({"api": {**options, "num_replicas": replicas}}), name="verseflow", route_prefix="/")
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
