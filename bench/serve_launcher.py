"""The Serve side of ``bench/api.py``, ``bench/uploads.py`` and ``bench/autoscale.py``: a local Ray and
the applications under load, until SIGINT.

    python -m bench.serve_launcher PORT REPLICAS              # the API, REPLICAS fixed replicas
    python -m bench.serve_launcher PORT auto --realtime --report-replicas 1

Not ``verseflow up``: its event worker, fingerprint shards, edges and the applications nobody loads
(documents, media, web) do work the measured servers do not, on two cores, and take a minute and a
half to start here. So only the loaded applications run, with their ``cluster/serve_config.yaml``
options. With a number of ``REPLICAS`` the API has that many replicas instead of autoscaling (more
replicas than the load needs only add processes competing for two cores: four started within 20 s
while ``bench/api.py`` was written); with ``auto`` it autoscales as the settings say
(``VERSEFLOW_API_SCALING__*``). ``--realtime`` adds ``WS /v1/ws`` (the ``gateway`` deployment, also as
the settings say). No transcoding slot is declared, so uploads' transcoding jobs wait unscheduled.

``--report-replicas S`` prints, every S seconds, one line ``replicas {json}``: the time and each
deployment's replicas by state, from ``serve.status()`` (the controller's own view).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time

import ray
from ray import serve

from bench.harness import REPLICAS_LINE
from cluster.local import RAY_ENVIRONMENT
from cluster.serve_config import deployment_options
from serve_deployments.application import build, build_realtime


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    # Ctrl-C semantics even when started from a shell that ignores SIGINT in background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name, value in RAY_ENVIRONMENT.items():  # measure what `make up` runs
        os.environ.setdefault(name, value)
    options = deployment_options()
    if args.replicas != "auto":
        api = {k: v for k, v in options["api"].items() if k != "autoscaling_config"}
        options["api"] = {**api, "num_replicas": int(args.replicas)}
    targets = [serve.RunTarget(build(options), name="verseflow", route_prefix="/")]
    if args.realtime:
        targets.append(serve.RunTarget(build_realtime(options), name="realtime", route_prefix="/v1/ws"))
    ray.init(address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    stop = threading.Event()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run_many(targets)
        print("serve started", flush=True)
        if args.report_replicas:
            threading.Thread(target=_report_replicas, args=(args.report_replicas, stop), daemon=True).start()
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        serve.shutdown()
        ray.shutdown()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A local Ray and the Serve applications under load.")
    parser.add_argument("port", type=int)
    parser.add_argument("replicas", help="api replicas, or 'auto' for the settings' autoscaling")
    parser.add_argument("--realtime", action="store_true", help="also run WS /v1/ws (the gateway)")
    parser.add_argument("--report-replicas", type=float, default=0.0, metavar="S",
                        help="print every deployment's replicas by state every S seconds")
    return parser.parse_args(argv)


def _report_replicas(every_s: float, stop: threading.Event) -> None:
    while not stop.wait(every_s):
        try:
            status = serve.status()
        except Exception as exc:  # noqa: BLE001 - the controller may be busy or stopping: skip one sample
            print(f"{REPLICAS_LINE}{json.dumps({'t': time.time(), 'error': repr(exc)})}", flush=True)
            continue
        deployments = {name: {str(state.value if hasattr(state, 'value') else state): count
                              for state, count in d.replica_states.items()}
                       for app in status.applications.values() for name, d in app.deployments.items()}
        print(f"{REPLICAS_LINE}{json.dumps({'t': time.time(), 'deployments': deployments})}", flush=True)


if __name__ == "__main__":
    main()
