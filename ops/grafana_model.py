"""A small builder for Grafana dashboard JSON (schema of Grafana 10 and later).

Just enough for VerseFlow's dashboards: rows of time series and stat panels, each with PromQL
targets, on a ``datasource`` template variable so the same JSON works against any Prometheus data
source a Grafana has. Layout is automatic (panels flow left to right, 24 columns wide).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39  # Grafana 10.4; Grafana migrates older and newer schemas on load


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    height: int = 8
    description: str = ""

    def json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        return {
            "id": panel_id, "type": self.kind, "title": self.title, "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": self.width, "h": self.height},
            "fieldConfig": {"defaults": {"unit": self.unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
            if self.kind == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"]}},
            "targets": [{"refId": chr(ord("A") + i), "expr": q.expr, "legendFormat": q.legend or "__auto",
                         "datasource": DATASOURCE} for i, q in enumerate(self.queries)],
        }


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = ("verseflow",)
    links: tuple[str, ...] = field(default=())

    def panels(self) -> list[Panel]:
        return [p for row in self.rows for p in row.panels]

    def json(self) -> dict[str, Any]:
        """The dashboard model (what ``POST /api/dashboards/db`` takes under ``dashboard``)."""
        panels: list[dict[str, Any]] = []
        next_id, y = 1, 0
        for row in self.rows:
            panels.append({"id": next_id, "type": "row", "title": row.title, "collapsed": False,
                           "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
            next_id, y, x, row_height = next_id + 1, y + 1, 0, 0
            for panel in row.panels:
                if x + panel.width > 24:
                    x, y, row_height = 0, y + row_height, 0
                panels.append(panel.json(next_id, x, y))
                next_id, x, row_height = next_id + 1, x + panel.width, max(row_height, panel.height)
            y += row_height
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": list(self.tags),
            "timezone": "utc", "schemaVersion": SCHEMA_VERSION, "editable": True, "graphTooltip": 1,
            "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
            "templating": {"list": [{
                "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
                "current": {}, "hide": 0, "refresh": 1, "options": [],
            }]},
            "annotations": {"list": []},
            "links": [{"title": "VerseFlow", "type": "dashboards", "tags": ["verseflow"], "asDropdown": True}],
            "panels": panels,
        }
