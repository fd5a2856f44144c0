"""Reading ``serve_config.yaml``: the per-deployment options ``make up`` shares with ``serve deploy``."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

APPLICATION = "verseflow"


def load() -> dict[str, Any]:
    return yaml.safe_load(resources.files("cluster").joinpath("serve_config.yaml").read_text())


def deployment_options(config: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Deployment name → ``.options(...)`` keyword arguments, over every application in the file."""
    config = config or load()
    return {d["name"]: {k: v for k, v in d.items() if k != "name"}
            for app in config["applications"] for d in app.get("deployments", [])}
