"""The deployment manifests are valid for Ray's own schema and name what the code deploys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray.serve.schema import ServeDeploySchema

from cluster import serve_config
from verseflow.scaling import ApiScaling, GatewayScaling
from verseflow.settings import Settings

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


def _scaling_in(config: dict) -> dict[str, dict]:
    """Deployment name -> its request limits and ``autoscaling_config``, as a manifest sets them."""
    return {d["name"]: {key: d[key] for key in ("max_ongoing_requests", "max_queued_requests", "autoscaling_config")}
            for app in config["applications"] for d in app["deployments"] if "autoscaling_config" in d}


def test_serve_config_carries_the_autoscaling_settings_defaults():
    """``serve deploy`` reads the file, ``make up`` the settings: by default both scale alike."""
    defaults = {name: scaling.deployment_options() for name, scaling in Settings().serve_scaling().items()}
    assert _scaling_in(serve_config.load()) == defaults


def test_rayservice_scales_each_replica_as_the_settings_do():
    """The cluster has its own replica ranges, but a replica there takes the load one takes here."""
    manifest = yaml.safe_load((CLUSTER / "rayservice.yaml").read_text())
    embedded = _scaling_in(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    for name, scaling in Settings().serve_scaling().items():
        options = embedded[name]
        assert options["max_ongoing_requests"] == scaling.max_ongoing_requests, name
        assert options["max_queued_requests"] == scaling.max_queued_requests, name
        assert options["autoscaling_config"]["target_ongoing_requests"] == scaling.target_ongoing_requests, name


def test_autoscaling_is_overridden_per_field_from_the_environment(monkeypatch):
    monkeypatch.setenv("VERSEFLOW_GATEWAY_SCALING__MAX_REPLICAS", "3")
    monkeypatch.setenv("VERSEFLOW_GATEWAY_SCALING__DOWNSCALE_DELAY_S", "5")
    settings = Settings()
    gateway = serve_config.deployment_options(scaling=settings.serve_scaling())["gateway"]
    defaults = GatewayScaling()
    assert gateway["autoscaling_config"]["max_replicas"] == 3
    assert gateway["autoscaling_config"]["downscale_delay_s"] == 5
    assert gateway["autoscaling_config"]["target_ongoing_requests"] == defaults.target_ongoing_requests
    assert gateway["max_ongoing_requests"] == defaults.max_ongoing_requests
    assert settings.api_scaling == ApiScaling()  # the others keep their defaults
    assert gateway["ray_actor_options"] == serve_config.load()["applications"][1]["deployments"][0]["ray_actor_options"]


def test_inconsistent_autoscaling_settings_are_refused(monkeypatch):
    monkeypatch.setenv("VERSEFLOW_API_SCALING__MAX_ONGOING_REQUESTS", "2")
    monkeypatch.setenv("VERSEFLOW_API_SCALING__TARGET_ONGOING_REQUESTS", "8")
    with pytest.raises(ValidationError, match="max_ongoing_requests below target_ongoing_requests"):
        Settings()
    monkeypatch.delenv("VERSEFLOW_API_SCALING__MAX_ONGOING_REQUESTS")
    monkeypatch.delenv("VERSEFLOW_API_SCALING__TARGET_ONGOING_REQUESTS")
    monkeypatch.setenv("VERSEFLOW_MEDIA_SCALING__MIN_REPLICAS", "5")
    monkeypatch.setenv("VERSEFLOW_MEDIA_SCALING__MAX_REPLICAS", "2")
    with pytest.raises(ValidationError, match="max_replicas must be at least min_replicas"):
        Settings()


# --- the RayService custom resource: the fields of KubeRay's ray.io/v1 CRD this manifest sets ---------------
# Written from the CRD's openAPIV3Schema (ray-operator/config/crd/bases/ray.io_rayservices.yaml): names, types
# (int32), enums and required fields. Unknown fields are refused at the levels the manifest writes itself, so
# a misspelt autoscaler field (silently dropped by the API server's pruning) fails here instead.

Int32 = Annotated[int, Field(ge=0, le=2**31 - 1, strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AutoscalerOptions(_Strict):
    upscalingMode: Literal["Default", "Aggressive", "Conservative"] | None = None
    idleTimeoutSeconds: Int32 | None = None
    image: str | None = None
    imagePullPolicy: str | None = None
    env: list[dict] | None = None
    envFrom: list[dict] | None = None
    resources: dict | None = None
    securityContext: dict | None = None
    volumeMounts: list[dict] | None = None
    version: Literal["v1", "v2"] | None = None


class HeadGroupSpec(_Strict):
    rayStartParams: dict[str, str] = {}
    template: dict
    serviceType: str | None = None
    headService: dict | None = None
    enableIngress: bool | None = None


class WorkerGroupSpec(_Strict):
    groupName: str
    replicas: Int32 = 0  # the CRD's defaults
    minReplicas: Int32 = 0
    maxReplicas: Int32 = 2**31 - 1
    idleTimeoutSeconds: Int32 | None = None
    numOfHosts: Int32 = 1
    rayStartParams: dict[str, str] = {}
    template: dict
    scaleStrategy: dict | None = None
    suspend: bool | None = None


class RayClusterSpec(_Strict):
    rayVersion: str
    enableInTreeAutoscaling: bool | None = None
    autoscalerOptions: AutoscalerOptions | None = None
    headGroupSpec: HeadGroupSpec
    workerGroupSpecs: list[WorkerGroupSpec] = []
    headServiceAnnotations: dict[str, str] | None = None
    suspend: bool | None = None


class RayServiceSpec(BaseModel):
    serveConfigV2: str
    rayClusterConfig: RayClusterSpec
    serviceUnhealthySecondThreshold: Int32 | None = None
    deploymentUnhealthySecondThreshold: Int32 | None = None


class RayService(BaseModel):
    apiVersion: Literal["ray.io/v1"]
    kind: Literal["RayService"]
    metadata: dict
    spec: RayServiceSpec


def test_rayservice_autoscaler_settings_are_the_crds_fields_and_consistent():
    """KubeRay's autoscaler keeps each worker group between its minReplicas and maxReplicas."""
    import ray

    service = RayService.model_validate(yaml.safe_load((CLUSTER / "rayservice.yaml").read_text()))
    cluster = service.spec.rayClusterConfig
    assert cluster.enableInTreeAutoscaling is True and cluster.autoscalerOptions is not None
    assert cluster.autoscalerOptions.idleTimeoutSeconds and cluster.autoscalerOptions.idleTimeoutSeconds > 0
    assert cluster.rayVersion == ray.__version__  # the image's Ray is the one the code is tested with
    assert cluster.workerGroupSpecs
    assert len({g.groupName for g in cluster.workerGroupSpecs}) == len(cluster.workerGroupSpecs)
    for group in cluster.workerGroupSpecs:
        assert "minReplicas" in group.model_fields_set and "maxReplicas" in group.model_fields_set, group.groupName
        assert 1 <= group.minReplicas <= group.replicas <= group.maxReplicas, group.groupName
    # Losing a worker node must leave somewhere for its hosts and jobs (bench/nodeloss.py): at least two
    # workers may run, and jobs have slots on them.
    assert max(g.maxReplicas for g in cluster.workerGroupSpecs) >= 2
    assert any("transcode_slots" in g.rayStartParams.get("resources", "") for g in cluster.workerGroupSpecs)


def test_the_crd_models_refuse_what_kuberay_would_not_take():
    manifest = yaml.safe_load((CLUSTER / "rayservice.yaml").read_text())
    group = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    for bad in ({"maxReplica": 3}, {"minReplicas": "1"}, {"maxReplicas": 2**31}, {"minReplicas": -1}):
        broken = {**manifest, "spec": {**manifest["spec"], "rayClusterConfig": {
            **manifest["spec"]["rayClusterConfig"], "workerGroupSpecs": [{**group, **bad}]}}}
        with pytest.raises(ValidationError):
            RayService.model_validate(broken)
    options = {**manifest["spec"]["rayClusterConfig"]["autoscalerOptions"], "upscalingMode": "Fast"}
    broken = {**manifest, "spec": {**manifest["spec"], "rayClusterConfig": {
        **manifest["spec"]["rayClusterConfig"], "autoscalerOptions": options}}}
    with pytest.raises(ValidationError):
        RayService.model_validate(broken)
