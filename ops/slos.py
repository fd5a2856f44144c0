"""VerseFlow's service level objectives, each as a ratio of bad events to all events.

One place says what is promised; ``ops/alerts.py`` turns each objective into multi-window,
multi-burn-rate alerts (Google SRE workbook, chapter 5) and the overview dashboard shows the same
ratios, so what pages an operator is what the dashboard shows.

Latency objectives are written against a histogram bucket boundary (``le``) that the metric really
has (``verseflow.metrics.LATENCY_BUCKETS_S`` / ``SLOW_BUCKETS_S``): "95 % of API requests within
250 ms" is ``1 - bucket{le="0.25"} / count``, which Prometheus computes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from ops.names import series


@dataclass(frozen=True)
class Slo:
    name: str  # recording rules are slo:<name>:error_ratio_rate<window>
    title: str
    objective: float  # fraction of good events, e.g. 0.999
    bad: str  # PromQL: rate of bad events over [{w}]
    total: str  # PromQL: rate of all events over [{w}]
    runbook: str

    @property
    def budget(self) -> float:
        return round(1.0 - self.objective, 6)

    def ratio(self, window: str) -> str:
        """The bad/total ratio over ``window``: 0 when there were events and no bad one (no series of bad
        events at all, e.g. no 5xx yet), nothing when there were no events."""
        bad, total = self.bad.replace("{w}", window), self.total.replace("{w}", window)
        return f"(({bad}) or vector(0)) / clamp_min({total}, 1e-9)"


def _latency(metric: str, le: str, selector: str = "") -> tuple[str, str]:
    """Bad and total rates of a latency histogram for 'faster than ``le`` seconds' (le must be a bucket)."""
    inner = f"{{{selector}}}" if selector else ""
    bucket_sel = f'{{{selector + "," if selector else ""}le="{le}"}}'
    total = f"sum(rate({series(metric)}_count{inner}[{{w}}]))"
    good = f"sum(rate({series(metric)}_bucket{bucket_sel}[{{w}}]))"
    return f"{total} - {good}", total


_HTTP = series("verseflow_http_requests_total")

SLOS: tuple[Slo, ...] = (
    Slo("api_availability", "API requests answered without a server error", 0.999,
        bad=f'sum(rate({_HTTP}{{status=~"5.."}}[{{w}}]))', total=f"sum(rate({_HTTP}[{{w}}]))",
        runbook="5xx by route on the API dashboard; then the replicas' logs (request_id)"),
    Slo("api_latency", "API requests answered within 250 ms (p95 ≤ 250 ms)", 0.95,
        *_latency("verseflow_http_request_duration_seconds", "0.25"),
        runbook="slowest routes on the API dashboard; Serve replicas and queue lengths on Ray/Serve"),
    Slo("ws_fanout_latency", "Room messages reaching the gateways within 250 ms (p99 ≤ 250 ms)", 0.99,
        *_latency("verseflow_ws_fanout_latency_seconds", "0.25"),
        runbook="realtime dashboard: fan-out by transport, slow-consumer cut-offs, room host recoveries"),
    Slo("upload_to_playable", "Uploads playable within 5 minutes", 0.99,
        *_latency("verseflow_upload_to_playable_seconds", "300.0"),
        runbook="audio dashboard: queue depth, stage durations and failures; transcoding slots per node"),
    Slo("webhook_lag", "Payment webhooks handled within 60 s of the provider creating them", 0.99,
        *_latency("verseflow_webhook_lag_seconds", "60.0"),
        runbook="events dashboard: webhook outcomes; Stripe's dashboard for its delivery retries"),
    Slo("event_handling_lag", "Events handled by every consumer group within 30 s", 0.99,
        *_latency("verseflow_event_handling_lag_seconds", "30.0"),
        runbook="events dashboard: lag and pending per group, the outbox backlog; the event worker's logs"),
)

#: The SRE workbook's windows for a 30-day objective: (long, short, burn rate, severity).
BURN_WINDOWS: tuple[tuple[str, str, float, str], ...] = (
    ("1h", "5m", 14.4, "page"),  # 2 % of the budget in one hour
    ("6h", "30m", 6.0, "page"),  # 5 % in six hours
    ("1d", "2h", 3.0, "ticket"),  # 10 % in a day
    ("3d", "6h", 1.0, "ticket"),  # 10 % in three days
)
WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
