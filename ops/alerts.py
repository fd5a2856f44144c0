"""Prometheus recording and alerting rules: SLO burn-rate alerts and the obvious symptoms.

Burn-rate alerts follow the Google SRE workbook ("Alerting on SLOs", the multiwindow, multi-burn-rate
recipe): for each objective, an alert fires when the error ratio over a long window AND over a short
window both exceed ``burn × budget``. The long window makes it significant, the short one makes it
reset quickly once the problem is gone. Pages: 14.4× over 1 h (and 5 min), 6× over 6 h (and 30 min);
tickets: 3× over 1 d (and 2 h), 1× over 3 d (and 6 h). Each ratio is a recording rule
``slo:<name>:error_ratio_rate<window>`` so the alert expressions stay cheap and readable.

Symptom alerts catch what no SLO sees quickly: a deployment without a healthy replica, a consumer
group falling behind, an outbox not draining, transcoding crashing, webhooks failing, room hosts
crash-looping, a scrape target gone. ``python -m ops.export`` writes ``ops/generated/prometheus/rules.yml``;
``promtool check rules`` validates it and ``promtool test rules ops/prometheus/rules_test.yml`` runs the
unit tests (synthetic series) beside it.
"""

from __future__ import annotations

from typing import Any

from ops.names import series
from ops.slos import BURN_WINDOWS, SLOS, WINDOWS, Slo


def record_name(slo: Slo, window: str) -> str:
    return f"slo:{slo.name}:error_ratio_rate{window}"


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def recording_rules() -> list[dict[str, Any]]:
    return [{"record": record_name(slo, w), "expr": slo.ratio(w), "labels": {"slo": slo.name}}
            for slo in SLOS for w in WINDOWS]


def burn_rate_alerts() -> list[dict[str, Any]]:
    rules = []
    for slo in SLOS:
        for severity in ("page", "ticket"):
            clauses = [
                f"({record_name(slo, long)} > ({burn} * {slo.budget})"
                f" and {record_name(slo, short)} > ({burn} * {slo.budget}))"
                for long, short, burn, sev in BURN_WINDOWS if sev == severity]
            rules.append({
                "alert": f"{_camel(slo.name)}BudgetBurn",
                "expr": "\n  or\n".join(clauses),
                "labels": {"severity": severity, "slo": slo.name},
                "annotations": {
                    "summary": f"{slo.title}: error budget burning too fast ({severity})",
                    "description": f"Objective {slo.objective:.2%} over 30 days; see the overview dashboard.",
                    "runbook": slo.runbook,
                },
            })
    return rules


def _s(name: str) -> str:
    return series(name)


def symptom_alerts() -> list[dict[str, Any]]:
    def alert(name: str, expr: str, for_: str, severity: str, summary: str) -> dict[str, Any]:
        return {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity},
                "annotations": {"summary": summary}}

    jobs = _s("verseflow_transcode_jobs_total")
    hooks = _s("verseflow_webhooks_total")
    return [
        alert("ServeDeploymentNoHealthyReplica",
              "sum by (application, deployment) (ray_serve_deployment_replica_healthy) < 1", "2m", "page",
              "Serve deployment {{ $labels.application }}/{{ $labels.deployment }} has no healthy replica"),
        alert("ConsumerGroupLagGrowing",
              f"max by (group) ({_s('verseflow_consumer_group_lag_events')}) > 100"
              f" and max by (group) (delta({_s('verseflow_consumer_group_lag_events')}[15m])) > 0", "15m", "ticket",
              "Consumer group {{ $labels.group }} is {{ $value }} events behind and falling further behind"),
        alert("ConsumerGroupPendingStuck",
              f"max by (group) ({_s('verseflow_consumer_group_pending_events')}) > 100", "30m", "ticket",
              "Consumer group {{ $labels.group }} has {{ $value }} entries delivered but not acknowledged"),
        alert("OutboxNotDraining", f"max({_s('verseflow_outbox_oldest_pending_age_seconds')}) > 120", "5m", "page",
              "The oldest unpublished outbox row is {{ $value | humanizeDuration }} old: is the event worker running?"),
        alert("TranscodeErrors",
              f'sum(rate({jobs}{{outcome="error"}}[15m])) / clamp_min(sum(rate({jobs}[15m])), 1e-9) > 0.1',
              "15m", "ticket", "More than 10 % of transcoding attempts crash ({{ $value | humanizePercentage }})"),
        alert("TranscodeQueueBacklog", f'max({_s("verseflow_transcode_jobs")}{{state="queued"}}) > 50', "30m",
              "ticket", "{{ $value }} uploads are waiting for a transcoding slot: add nodes or slots"),
        alert("WebhookFailures",
              f'sum(rate({hooks}{{outcome="failed"}}[10m])) / clamp_min(sum(rate({hooks}[10m])), 1e-9) > 0.05',
              "10m", "page", "More than 5 % of payment webhooks fail ({{ $value | humanizePercentage }})"),
        alert("WebhookSignaturesRejected", f'sum(rate({hooks}{{outcome="rejected"}}[15m])) > 0', "15m", "ticket",
              "Webhooks are rejected for their signature: is VERSEFLOW_STRIPE_WEBHOOK_SECRET the endpoint's?"),
        alert("SlowConsumerCutoffsHigh",
              f"sum(rate({_s('verseflow_ws_slow_consumer_cutoffs_total')}[15m]))"
              f" / clamp_min(sum(rate({_s('verseflow_ws_connections_opened_total')}[15m])), 1e-9) > 0.05",
              "15m", "ticket", "More than 5 % of WebSockets are cut as slow consumers: gateways overloaded?"),
        alert("RealtimeHostCrashLooping",
              f"sum by (kind) (increase({_s('verseflow_realtime_host_recoveries_total')}[15m])) > 3", "0m", "page",
              "{{ $labels.kind }} hosts restarted {{ $value }} times in 15 minutes"),
        alert("ScrapeTargetDown", 'up{job=~"ray|verseflow.*"} == 0', "5m", "page",
              "Prometheus cannot scrape {{ $labels.instance }} ({{ $labels.job }})"),
    ]


def rules() -> dict[str, Any]:
    """The whole rules file (``rule_files`` format)."""
    return {"groups": [
        {"name": "verseflow-slo-ratios", "interval": "30s", "rules": recording_rules()},
        {"name": "verseflow-slo-burn", "rules": burn_rate_alerts()},
        {"name": "verseflow-symptoms", "rules": symptom_alerts()},
    ]}
