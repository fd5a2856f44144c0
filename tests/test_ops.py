"""ops/: the generated dashboards and rules are current, name only exported metrics, pass promtool,
and ``verseflow dashboards push`` is idempotent (against tests/grafana_stub.py: no Grafana here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ops import alerts, export
from ops.dashboards import RAY_METRICS, all_dashboards
from ops.names import series
from tests.grafana_stub import GrafanaStub
from verseflow import cli, metrics

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL = shutil.which("promtool")
_NAME = re.compile(r"\b(ray_[a-z0-9_]+|slo:[a-z0-9_:]+|up)\b")


def _load_all_metric_modules() -> None:
    """Import every module that declares metrics, so the catalogue is complete."""
    import audio.metrics  # noqa: F401
    import billing.subscriptions  # noqa: F401
    import ml.metrics  # noqa: F401
    import rooms.metrics  # noqa: F401
    import verseflow.events.lag  # noqa: F401


def exported_names() -> set[str]:
    _load_all_metric_modules()
    names = set(RAY_METRICS)
    for metric in metrics.CATALOG.values():
        base = series(metric.name)
        names |= {base + suffix for suffix in ("_bucket", "_count", "_sum")} if metric.kind == "histogram" else {base}
    return names


def every_expression() -> list[str]:
    exprs = [t["expr"] for d in all_dashboards() for p in d.json()["panels"] for t in p.get("targets", [])]
    exprs += [r["expr"] for g in alerts.rules()["groups"] for r in g["rules"]]
    return exprs


def test_the_generated_files_are_current():
    assert export.stale() == [], "run `python -m ops.export`"


def test_every_query_and_rule_names_a_metric_that_is_exported():
    known = exported_names() | {r["record"] for r in alerts.recording_rules()} | {"up"}
    for expr in every_expression():
        names = set(_NAME.findall(expr))
        assert names, expr
        assert names <= known, (names - known, expr)


def test_dashboards_have_stable_unique_uids_and_panel_ids():
    uids = [d.uid for d in all_dashboards()]
    assert len(uids) == len(set(uids)) == 6
    for dashboard in all_dashboards():
        panels = dashboard.json()["panels"]
        assert len({p["id"] for p in panels}) == len(panels)
        assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in panels)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool comes with Debian's prometheus (make system-deps)")
def test_promtool_checks_and_unit_tests_the_rules():
    check = subprocess.run([PROMTOOL, "check", "rules", str(export.RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([PROMTOOL, "test", "rules", str(ROOT / "ops/prometheus/rules_test.yml")],
                          capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_every_slo_has_page_and_ticket_alerts_and_every_rule_a_severity():
    rules = yaml.safe_load(export.RULES.read_text())["groups"]
    burn = [r for g in rules for r in g["rules"] if r.get("alert", "").endswith("BudgetBurn")]
    from ops.slos import SLOS
    assert {(r["labels"]["slo"], r["labels"]["severity"]) for r in burn} == \
        {(s.name, sev) for s in SLOS for sev in ("page", "ticket")}
    assert all(r["labels"]["severity"] in ("page", "ticket") for g in rules for r in g["rules"] if "alert" in r)


@pytest.fixture
def grafana(monkeypatch):
    stub = GrafanaStub(token="glsa_test")
    monkeypatch.setenv("VERSEFLOW_GRAFANA_TOKEN", "glsa_test")
    yield stub
    stub.close()


def _push(url: str, capsys, *extra: str) -> list[list[str]]:
    code = cli.main(["dashboards", "push", "--grafana-url", url, *extra])
    out = capsys.readouterr()
    assert code == 0, out.err
    return [line.split("\t") for line in out.out.splitlines()]


def test_push_creates_then_changes_nothing_then_updates_only_what_changed(grafana, capsys, tmp_path, monkeypatch):
    ray_dir = tmp_path / "ray"
    ray_dir.mkdir()
    (ray_dir / "default_grafana_dashboard.json").write_text(json.dumps(
        {"uid": "rayDefaultDashboard", "title": "Default Dashboard", "panels": []}))

    first = _push(grafana.url, capsys, "--ray-dashboards", str(ray_dir))
    assert [row[0] for row in first] == ["created"] * 7
    assert set(grafana.dashboards) == {d.uid for d in all_dashboards()} | {"rayDefaultDashboard"}
    assert set(grafana.folders) == {"verseflow"}
    assert all(d["folderUid"] == "verseflow" for d in grafana.dashboards.values())
    saves = len(grafana.saves)

    second = _push(grafana.url, capsys, "--ray-dashboards", str(ray_dir))
    assert [row[0] for row in second] == ["unchanged"] * 7
    assert len(grafana.saves) == saves  # no new version anywhere

    from ops import dashboards as defs
    original = defs.api

    def changed():
        d = original()
        return type(d)(d.uid, d.title + " (changed)", d.description, d.rows)

    monkeypatch.setattr(defs, "api", changed)
    third = _push(grafana.url, capsys, "--no-ray")
    assert [row[:2] for row in third if row[0] != "unchanged"] == [["updated", "verseflow-api"]]
    assert grafana.dashboards["verseflow-api"]["dashboard"]["version"] == 2
    assert grafana.saves[saves:] == [("verseflow-api", 2)]


def test_push_without_the_right_token_fails_cleanly(grafana, capsys, monkeypatch):
    monkeypatch.setenv("VERSEFLOW_GRAFANA_TOKEN", "wrong")
    assert cli.main(["dashboards", "push", "--grafana-url", grafana.url, "--no-ray"]) == 1
    assert "verseflow dashboards push" in capsys.readouterr().err
    assert grafana.dashboards == {}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool comes with Debian's prometheus (make system-deps)")
def test_observe_writes_a_prometheus_config_that_promtool_accepts(tmp_path):
    from ops import observe

    if shutil.which("prometheus") is None:
        pytest.skip("needs Debian's prometheus")
    discovery = tmp_path / "sd.json"
    discovery.write_text(json.dumps([{"labels": {"job": "ray"}, "targets": ["127.0.0.1:8080"]}]))
    for sd in (None, discovery):
        command = observe.prepare(tmp_path / ("sd" if sd else "static"), ray_targets=["127.0.0.1:8080"],
                                  listen="127.0.0.1:9090", service_discovery=sd)  # runs promtool check config
        config = yaml.safe_load(Path(command[1].removeprefix("--config.file=")).read_text())
        assert config["rule_files"] == [str(export.RULES.resolve())]
        ray_job = config["scrape_configs"][0]
        assert ray_job["job_name"] == "ray"
        assert ("file_sd_configs" in ray_job) == (sd is not None)
