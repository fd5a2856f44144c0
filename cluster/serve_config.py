"""Reading ``serve_config.yaml``: the per-deployment options ``make up`` shares with ``serve deploy``.

The autoscaling of each deployment that scales (``api``, ``gateway``, ``media``) comes from the
settings (``verseflow/scaling.py``), so that ``make up`` and the benchmarks tune it from the
environment; the file carries the same defaults for ``serve deploy`` (``tests/test_cluster_config.py``
keeps them equal).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from verseflow.scaling import ServeScaling
from verseflow.settings import get_settings

APPLICATION = "verseflow"


def load() -> dict[str, Any]:
    return yaml.safe_load(resources.files("cluster").joinpath("serve_config.yaml").read_text())


def deployment_options(config: dict[str, Any] | None = None,
                       scaling: dict[str, ServeScaling] | None = None) -> dict[str, dict[str, Any]]:
    """Deployment name → ``.options(...)`` keyword arguments, over every application in the file, with
    ``scaling`` (default: the settings') in place of the file's limits and autoscaling."""
    config = config or load()
    scaling = get_settings().serve_scaling() if scaling is None else scaling
    options = {d["name"]: {k: v for k, v in d.items() if k != "name"}
               for app in config["applications"] for d in app.get("deployments", [])}
    for name, settings in scaling.items():
        if name in options:
            options[name] = {**options[name], **settings.deployment_options()}
    return options
