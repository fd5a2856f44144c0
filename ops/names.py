"""Exported metric names.

VerseFlow declares its metrics as ``verseflow_*`` (``verseflow.metrics``); inside Ray they reach
Prometheus through Ray's metrics agent, which prefixes every application metric with ``ray_`` (seen
on Ray 2.60: ``ray_verseflow_http_requests_total``, counters keep their single ``_total``, histogram
buckets keep ``le="0.25"``). Dashboards and rules are written against what Prometheus stores.
"""

from __future__ import annotations

RAY_PREFIX = "ray_"


def series(declared: str) -> str:
    """The name Prometheus stores for a metric VerseFlow declares (``verseflow_x`` -> ``ray_verseflow_x``)."""
    return RAY_PREFIX + declared
