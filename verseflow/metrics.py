"""Per-route HTTP metrics: request count, latency histogram and error count.

Inside Ray (a Serve replica) they go through ``ray.util.metrics`` and are exported by Ray's metrics
agent with every other Ray metric (one Prometheus scrape target per node). Outside Ray (the bare
uvicorn baseline in ``bench/api.py``, unit tests) they fall back to ``prometheus_client``.
"""

from __future__ import annotations

from typing import Protocol

LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
_TAGS = ("route", "method", "status")


class HttpMetrics(Protocol):
    def observe(self, route: str, method: str, status: int, seconds: float) -> None: ...


class _RayHttpMetrics:
    def __init__(self) -> None:
        from ray.util import metrics

        self._requests = metrics.Counter(
            "verseflow_http_requests_total", "HTTP requests by route, method and status.", tag_keys=_TAGS
        )
        self._errors = metrics.Counter(
            "verseflow_http_errors_total", "HTTP responses with status >= 400.", tag_keys=_TAGS
        )
        self._latency = metrics.Histogram(
            "verseflow_http_request_duration_seconds", "HTTP request latency.",
            boundaries=LATENCY_BUCKETS_S, tag_keys=("route", "method"),
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        tags = {"route": route, "method": method, "status": str(status)}
        self._requests.inc(1, tags)
        if status >= 400:
            self._errors.inc(1, tags)
        self._latency.observe(seconds, {"route": route, "method": method})


class _PrometheusHttpMetrics:
    def __init__(self) -> None:
        import prometheus_client as prom

        registry = prom.REGISTRY
        existing = getattr(registry, "_names_to_collectors", {})
        if "verseflow_http_requests_total" in existing:  # a second app in one process (tests)
            self._requests = existing["verseflow_http_requests_total"]
            self._errors = existing["verseflow_http_errors_total"]
            self._latency = existing["verseflow_http_request_duration_seconds"]
            return
        self._requests = prom.Counter("verseflow_http_requests", "HTTP requests.", _TAGS)
        self._errors = prom.Counter("verseflow_http_errors", "HTTP responses with status >= 400.", _TAGS)
        self._latency = prom.Histogram(
            "verseflow_http_request_duration_seconds", "HTTP request latency.", ("route", "method"),
            buckets=LATENCY_BUCKETS_S,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(route, method, str(status)).inc()
        if status >= 400:
            self._errors.labels(route, method, str(status)).inc()
        self._latency.labels(route, method).observe(seconds)


def http_metrics() -> HttpMetrics:
    """The backend for this process: Ray's when running in a Ray worker, else prometheus_client."""
    try:
        import ray

        if ray.is_initialized():
            return _RayHttpMetrics()
    except ImportError:
        pass
    return _PrometheusHttpMetrics()
