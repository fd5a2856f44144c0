"""The deployment manifests are valid for Ray's own schema and name what the code deploys."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from cluster import serve_config

CLUSTER = Path(__file__).parents[1] / "cluster"


def test_serve_config_validates_and_names_real_deployments():
    config = serve_config.load()
    schema = ServeDeploySchema.model_validate(config) if hasattr(ServeDeploySchema, "model_validate") \
        else ServeDeploySchema.parse_obj(config)
    import importlib

    from serve_deployments.application import APPLICATIONS

    assert [(a.name, a.route_prefix) for a in schema.applications] == [(n, p) for n, p, _ in APPLICATIONS]
    for app in schema.applications:
        module, attribute = app.import_path.split(":")
        application = getattr(importlib.import_module(module), attribute)
        assert {d.name for d in app.deployments} == {application._bound_deployment.name}
    for options in serve_config.deployment_options().values():
        scaling = options.get("autoscaling_config")
        assert scaling is None or scaling["max_replicas"] >= scaling["min_replicas"]


def test_rayservice_embeds_a_valid_serve_config():
    manifest = yaml.safe_load((CLUSTER / "rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService" and manifest["apiVersion"] == "ray.io/v1"
    embedded = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(embedded) if hasattr(ServeDeploySchema, "model_validate") \
        else ServeDeploySchema.parse_obj(embedded)
    assert schema.applications[0].import_path == serve_config.load()["applications"][0]["import_path"]
    cluster = manifest["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    containers = [group["template"]["spec"]["containers"][0] for group in groups]
    assert all(c["envFrom"][0]["secretRef"]["name"] == "verseflow-secrets" for c in containers)
