"""Does a Prometheus see what VerseFlow's dashboards and alerts are built on?

A dashboard panel on a metric nobody exports shows "No data" forever, and an alert on one never fires:
both look healthy. This asks a running Prometheus, for every panel query and every metric an alert
rule reads, whether it has data, and whether the SLO recording rules have been evaluated.

    .venv/bin/python -m ops.coverage                              # make observe's Prometheus
    .venv/bin/python -m ops.coverage --prometheus http://prom:9090 --allow ray_verseflow_ws_closes_total

Run it after a little traffic (the platform exports a metric only once it has something to say).
Exit status 0 when nothing is missing except the ``--allow``-ed names. ``tests/test_observe.py`` runs
the same checks against the test session's platform.
"""

from __future__ import annotations

import argparse
import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

from ops import alerts
from ops.dashboards import all_dashboards

#: A metric or recording-rule name inside a PromQL expression.
NAME = re.compile(r"\b(ray_[a-z0-9_]+|slo:[a-z0-9_:]+)\b")
#: Metrics only a fault produces on a healthy platform (a socket too slow to keep up, a stage that
#: crashes, a server close for a reason, a host restarted after a crash): no data from them is expected.
NEEDS_A_FAULT = frozenset({"ray_verseflow_ws_slow_consumer_cutoffs_total",
                           "ray_verseflow_transcode_stage_failures_total", "ray_verseflow_ws_closes_total",
                           "ray_verseflow_realtime_host_recoveries_total"})


def query(base: str, expr: str) -> list:
    """The instant vector ``expr`` evaluates to on the Prometheus at ``base``."""
    url = f"{base.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {expr!r}: {body}")
    return body["data"]["result"]


@dataclass(frozen=True)
class Coverage:
    """What has no data: panels (dashboard uid, title), metrics alert rules read, SLO recordings; and how
    many panels and rule metrics were asked about (those on an allowed metric are not)."""

    empty_panels: list[tuple[str, str]]
    absent_rule_metrics: list[str]
    unrecorded: list[str]
    panels_asked: int
    rule_metrics_asked: int

    @property
    def complete(self) -> bool:
        return not (self.empty_panels or self.absent_rule_metrics or self.unrecorded)


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, PromQL) of every panel target."""
    return [(d.uid, p["title"], t["expr"]) for d in all_dashboards() for p in d.json()["panels"]
            for t in p.get("targets", [])]


def rule_metrics() -> set[str]:
    """The exported metrics the alert and recording rules read (recordings themselves excluded)."""
    return {n for g in alerts.rules()["groups"] for r in g["rules"] for n in NAME.findall(r["expr"])
            if not n.startswith("slo:")}


def check(base: str, allowed: Iterable[str] = NEEDS_A_FAULT) -> Coverage:
    """One pass over every panel, rule metric and 5-minute SLO recording; ``allowed`` names may be empty."""
    allowed = frozenset(allowed)
    panels = [(uid, title, expr) for uid, title, expr in panel_queries() if not set(NAME.findall(expr)) & allowed]
    metrics = rule_metrics() - allowed
    empty = [(uid, title) for uid, title, expr in panels if not query(base, expr)]
    absent = sorted(n for n in metrics if not query(base, f"count({n})"))
    # Rules are evaluated every evaluation interval: each SLO's 5-minute ratio has a value once they ran.
    unrecorded = [r["record"] for r in alerts.recording_rules()
                  if r["record"].endswith("rate5m") and not query(base, r["record"])]
    return Coverage(empty, absent, unrecorded, len(panels), len(metrics))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="the Prometheus to ask")
    parser.add_argument("--allow", action="append", default=[], metavar="METRIC",
                        help="a metric allowed to have no data (besides those only a fault produces)")
    args = parser.parse_args(argv)
    coverage = check(args.prometheus, NEEDS_A_FAULT | set(args.allow))
    asked = coverage.panels_asked
    print(f"panels with data: {asked - len(coverage.empty_panels)} of the {asked} not on an allowed metric "
          f"({len(panel_queries()) - asked} on one, not asked)")
    for uid, title in coverage.empty_panels:
        print(f"  no data: {uid} / {title}")
    print(f"metrics the rules read, present: {coverage.rule_metrics_asked - len(coverage.absent_rule_metrics)} "
          f"of {coverage.rule_metrics_asked}")
    for name in coverage.absent_rule_metrics:
        print(f"  absent: {name}")
    for record in coverage.unrecorded:
        print(f"  not recorded yet: {record}")
    print(f"allowed without data (only a fault produces them): {', '.join(sorted(NEEDS_A_FAULT))}")
    present = [n for n in sorted(NEEDS_A_FAULT) if query(args.prometheus, f"count({n})")]
    print(f"  of which present (such a fault happened): {', '.join(present) or 'none'}")
    return 0 if coverage.complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
