"""``make observe``: Debian's Prometheus scraping a running VerseFlow (``make up``) with the rules loaded.

VerseFlow's own metrics and Ray's and Serve's all come out of Ray's metrics agent, one endpoint per
node, so one scrape job (``ray``) covers the application. Its targets come from the service discovery
file Ray's dashboard keeps up to date with every node of the cluster
(``/tmp/ray/prom_metrics_service_discovery.json``), or, without a Ray dashboard, from the local agent's
port (``VERSEFLOW_RAY_METRICS_PORT``, 8080). Prometheus itself is scraped too (job ``prometheus``).

The configuration and the time series live under ``<var_dir>/prometheus/``; the UI answers on
http://127.0.0.1:9090 (alerts at ``/alerts``, rules at ``/rules``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ops.export import RULES
from verseflow.settings import get_settings

RAY_SERVICE_DISCOVERY = Path("/tmp/ray/prom_metrics_service_discovery.json")


def config(*, ray_targets: list[str], rules: Path = RULES, service_discovery: Path | None = None,
           scrape_interval: str = "15s", listen: str = "127.0.0.1:9090") -> dict[str, Any]:
    """A ``prometheus.yml``: Ray's agents (from the discovery file when given, else ``ray_targets``)."""
    ray_job: dict[str, Any] = {"job_name": "ray"}
    if service_discovery is not None:
        ray_job["file_sd_configs"] = [{"files": [str(service_discovery)]}]
    else:
        ray_job["static_configs"] = [{"targets": ray_targets}]
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(rules.resolve())],
        "scrape_configs": [ray_job, {"job_name": "prometheus", "static_configs": [{"targets": [listen]}]}],
    }


def prepare(folder: Path, *, ray_targets: list[str], listen: str, scrape_interval: str = "15s",
            service_discovery: Path | None = None) -> list[str]:
    """Write the configuration under ``folder``, check it with promtool; returns the Prometheus command."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise SystemExit("prometheus is not installed: `make observe` installs Debian's package")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config(ray_targets=ray_targets, service_discovery=service_discovery,
                                          scrape_interval=scrape_interval, listen=listen), sort_keys=False))
    promtool = shutil.which("promtool")
    if promtool is not None:
        subprocess.run([promtool, "check", "config", str(path)], check=True, stdout=subprocess.DEVNULL)
    return [prometheus, f"--config.file={path}", f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={listen}", "--web.enable-lifecycle", "--log.level=warn"]


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:9090")
    parser.add_argument("--scrape-interval", default="15s")
    parser.add_argument("--ray-metrics", default=f"127.0.0.1:{settings.ray_metrics_port}",
                        help="Ray's metrics agent, when there is no service discovery file")
    args = parser.parse_args(argv)
    discovery = RAY_SERVICE_DISCOVERY if RAY_SERVICE_DISCOVERY.exists() else None
    command = prepare(settings.var_dir / "prometheus", ray_targets=[args.ray_metrics], listen=args.listen,
                      scrape_interval=args.scrape_interval, service_discovery=discovery)
    source = f"Ray's service discovery file {discovery}" if discovery else f"Ray's metrics agent {args.ray_metrics}"
    print(f"Prometheus on http://{args.listen} scraping {source}; rules from {RULES}", flush=True)
    os.execv(command[0], command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
