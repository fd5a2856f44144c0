"""Application metrics: one small API over Ray's metrics agent or ``prometheus_client``.

Inside Ray (a Serve replica, an actor) metrics go through ``ray.util.metrics`` and are exported by
Ray's metrics agent with every other Ray metric (one Prometheus scrape target per node). Outside Ray
(the bare uvicorn baseline in ``bench/api.py``, unit tests) they fall back to ``prometheus_client``'s
default registry. The backend is chosen at a metric's first use, not at import, so a module may
declare its metrics at import time and still export through Ray once it runs in a Ray worker.

Names follow Prometheus' conventions: base units in the name (``_seconds``, ``_bytes``), counters end
in ``_total``. Domain packages may declare metrics here (it imports no Ray unless Ray is running);
every metric is declared with its labels, and label values must come from small, fixed sets
(a route template, a transport, a stage), never an id.

:data:`CATALOG` lists every metric VerseFlow exports, so the dashboards and the alert rules
(``ops/``) can be checked against it.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
#: Minutes-long processes (transcoding, upload to playable) need buckets that reach further.
SLOW_BUCKETS_S = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]
_TAGS = ("route", "method", "status")


@dataclass
class _Metric:
    """A metric declared once per process; its backend object is made at first use."""

    kind: str  # counter | gauge | histogram
    name: str
    doc: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    _impl: Any = field(default=None, repr=False)
    _ray: bool = False

    def _backend(self) -> Any:
        # Bound at first use, and bound again to Ray's once this process joins Ray (a driver that used a
        # metric before ``ray.init``), so nothing it records afterwards stays out of Ray's export.
        if self._impl is None or (not self._ray and _in_ray()):
            with _LOCK:
                if self._impl is None or (not self._ray and _in_ray()):
                    self._impl, self._ray = _make(self)
        return self._impl

    def _check(self, labels: dict[str, str]) -> dict[str, str]:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(labels)}")
        return {k: str(v) for k, v in labels.items()}


class Counter(_Metric):
    def inc(self, amount: float = 1.0, **labels: str) -> None:
        tags = self._check(labels)
        impl = self._backend()
        if self._ray:
            impl.inc(amount, tags or None)
        else:
            (impl.labels(**tags) if tags else impl).inc(amount)


class Gauge(_Metric):
    def set(self, value: float, **labels: str) -> None:
        tags = self._check(labels)
        impl = self._backend()
        if self._ray:
            impl.set(value, tags or None)
        else:
            (impl.labels(**tags) if tags else impl).set(value)


class Histogram(_Metric):
    def observe(self, value: float, **labels: str) -> None:
        tags = self._check(labels)
        impl = self._backend()
        if self._ray:
            impl.observe(value, tags or None)
        else:
            (impl.labels(**tags) if tags else impl).observe(value)


_LOCK = threading.Lock()
#: Every metric declared in this process, by name (the catalogue the dashboards are checked against).
CATALOG: dict[str, _Metric] = {}


def _declare(cls: type[_Metric], kind: str, name: str, doc: str, labels: tuple[str, ...],
             buckets: tuple[float, ...] = ()) -> Any:
    existing = CATALOG.get(name)
    if existing is not None:
        if existing.kind != kind or existing.labels != labels:
            raise ValueError(f"metric {name} declared twice with different shapes")
        return existing
    if kind == "counter" and not name.endswith("_total"):
        raise ValueError(f"counter {name} must end in _total")
    metric = cls(kind, name, doc, labels, buckets)
    CATALOG[name] = metric
    return metric


def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return _declare(Counter, "counter", name, doc, labels)


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return _declare(Gauge, "gauge", name, doc, labels)


def histogram(name: str, doc: str, labels: tuple[str, ...] = (),
              buckets: list[float] | tuple[float, ...] = tuple(LATENCY_BUCKETS_S)) -> Histogram:
    return _declare(Histogram, "histogram", name, doc, labels, tuple(buckets))


def _in_ray() -> bool:
    ray = sys.modules.get("ray")  # a process that never imported Ray is not in Ray
    return ray is not None and ray.is_initialized()


def _make(metric: _Metric) -> tuple[Any, bool]:
    if _in_ray():
        from ray.util import metrics as ray_metrics

        keys = metric.labels or None
        if metric.kind == "counter":
            return ray_metrics.Counter(metric.name, metric.doc, tag_keys=keys), True
        if metric.kind == "gauge":
            return ray_metrics.Gauge(metric.name, metric.doc, tag_keys=keys), True
        return ray_metrics.Histogram(metric.name, metric.doc, boundaries=list(metric.buckets), tag_keys=keys), True
    import prometheus_client as prom

    existing = getattr(prom.REGISTRY, "_names_to_collectors", {}).get(metric.name)
    if existing is not None:  # made by an earlier declaration in this process (tests reload modules)
        return existing, False
    if metric.kind == "counter":  # prometheus_client appends _total itself
        return prom.Counter(metric.name.removesuffix("_total"), metric.doc, metric.labels), False
    if metric.kind == "gauge":
        return prom.Gauge(metric.name, metric.doc, metric.labels), False
    return prom.Histogram(metric.name, metric.doc, metric.labels, buckets=metric.buckets), False


# -- HTTP (the API's middleware) -------------------------------------------------------------------


class HttpMetrics(Protocol):
    def observe(self, route: str, method: str, status: int, seconds: float) -> None: ...


HTTP_REQUESTS = counter("verseflow_http_requests_total", "HTTP requests by route, method and status.", _TAGS)
HTTP_ERRORS = counter("verseflow_http_errors_total", "HTTP responses with status >= 400.", _TAGS)
HTTP_LATENCY = histogram("verseflow_http_request_duration_seconds", "HTTP request latency.", ("route", "method"))


class _HttpMetrics:
    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        HTTP_REQUESTS.inc(route=route, method=method, status=str(status))
        if status >= 400:
            HTTP_ERRORS.inc(route=route, method=method, status=str(status))
        HTTP_LATENCY.observe(seconds, route=route, method=method)


def http_metrics() -> HttpMetrics:
    """The HTTP metrics of this process (Ray's backend inside a Ray worker, else prometheus_client)."""
    return _HttpMetrics()
