"""VerseFlow's Grafana dashboards, as code.

Six dashboards: the overview (every SLO's current ratio and error budget burn), the API, the
realtime path, the audio pipeline, events and webhooks, and Ray/Serve replicas and nodes. Every query
names a metric VerseFlow exports (``verseflow.metrics.CATALOG``) or one Ray/Serve exports
(:data:`RAY_METRICS`); ``tests/test_ops.py`` checks that, and the observe test checks each one
returns data from a real Prometheus scraping a running platform.

``python -m ops.export`` writes them to ``ops/generated/dashboards/*.json``;
``verseflow dashboards push --grafana-url URL`` uploads them (``ops/grafana.py``).
"""

from __future__ import annotations

from ops.grafana_model import Dashboard, Panel, Query, Row
from ops.names import series
from ops.slos import SLOS

#: Ray's and Serve's own metrics the dashboards use (exported by Ray's metrics agent as they are).
RAY_METRICS = (
    "ray_serve_deployment_replica_healthy", "ray_serve_autoscaling_target_replicas",
    "ray_serve_num_ongoing_requests_at_replicas", "ray_node_cpu_utilization", "ray_node_mem_used",
)


def _s(name: str) -> str:
    return series(name)


def _rate(name: str, by: str, selector: str = "", window: str = "5m") -> str:
    sel = f"{{{selector}}}" if selector else ""
    return f"sum by ({by}) (rate({_s(name)}{sel}[{window}]))"


def _quantile(q: float, name: str, by: str, window: str = "5m") -> str:
    keep = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({keep}) (rate({_s(name)}_bucket[{window}])))"


def overview() -> Dashboard:
    slo_panels = tuple(
        Panel(f"{slo.title} (objective {slo.objective:.2%})",
              (Query(f"1 - ({slo.ratio('1h')})", "good, 1 h"), Query(f"1 - ({slo.ratio('5m')})", "good, 5 min")),
              unit="percentunit", width=8, description=slo.runbook)
        for slo in SLOS)
    burn = tuple(
        Panel(f"Error budget burn rate: {slo.name}",
              (Query(f"({slo.ratio('1h')}) / {slo.budget}", "1 h"),
               Query(f"({slo.ratio('6h')}) / {slo.budget}", "6 h")),
              width=8, description="1 = spending the budget exactly over 30 days; 14.4 over 1 h pages")
        for slo in SLOS)
    return Dashboard("verseflow-overview", "VerseFlow / Overview",
                     "Whether VerseFlow keeps its promises: each SLO's good ratio and its error budget burn rate.",
                     (Row("Service level objectives", slo_panels), Row("Error budget burn", burn)))


def api() -> Dashboard:
    http = "verseflow_http_requests_total"
    return Dashboard("verseflow-api", "VerseFlow / API", "REST API traffic, errors and latency by route.", (
        Row("Traffic and errors", (
            Panel("Requests per second by route", (Query(_rate(http, "route"), "{{route}}"),), unit="reqps"),
            Panel("Errors per second by route and status",
                  (Query(_rate("verseflow_http_errors_total", "route, status"), "{{route}} {{status}}"),),
                  unit="reqps"),
        )),
        Row("Latency", (
            Panel("p95 latency by route", (Query(_quantile(0.95, "verseflow_http_request_duration_seconds",
                                                           "route"), "{{route}}"),), unit="s"),
            Panel("p50 / p95 / p99 latency, all routes", tuple(
                Query(_quantile(q, "verseflow_http_request_duration_seconds", ""), f"p{int(q * 100)}")
                for q in (0.5, 0.95, 0.99)), unit="s"),
        )),
        Row("Recommendation shards", (
            Panel("p99 answer time by shard (Ray call and search)",
                  (Query(_quantile(0.99, "verseflow_rec_shard_search_duration_seconds", "shard"), "shard {{shard}}"),),
                  unit="s"),
            Panel("Queries per search call, by shard (batching under load)",
                  (Query(f"{_rate('verseflow_rec_shard_queries_total', 'shard')} / "
                         f"{_rate('verseflow_rec_shard_calls_total', 'shard')}", "shard {{shard}}"),)),
        )),
    ))


def realtime() -> Dashboard:
    return Dashboard("verseflow-realtime", "VerseFlow / Realtime",
                     "WebSockets per transport (edge, serve, serve-yjs), fan-out latency, cut-offs and hosts.", (
        Row("Connections", (
            Panel("Open WebSockets by transport",
                  (Query(f"sum by (transport) ({_s('verseflow_ws_connections')})", "{{transport}}"),)),
            Panel("Opened and closed per second",
                  (Query(_rate("verseflow_ws_connections_opened_total", "transport"), "opened {{transport}}"),
                   Query(_rate("verseflow_ws_connections_closed_total", "transport"), "closed {{transport}}")),
                  unit="ops"),
            Panel("Closed by the server, by close code (4408 slow, 4429 rate, 4000 idle, 4401 auth)",
                  (Query(_rate("verseflow_ws_closes_total", "transport, code", window="15m"),
                         "{{transport}} {{code}}"),), unit="ops"),
        )),
        Row("Fan-out", (
            Panel("Messages delivered per second by transport",
                  (Query(_rate("verseflow_ws_messages_delivered_total", "transport"), "{{transport}}"),), unit="ops"),
            Panel("Fan-out latency p99 by transport",
                  (Query(_quantile(0.99, "verseflow_ws_fanout_latency_seconds", "transport"), "p99 {{transport}}"),
                   Query(_quantile(0.5, "verseflow_ws_fanout_latency_seconds", "transport"), "p50 {{transport}}")),
                  unit="s"),
            Panel("Slow-consumer cut-offs per second",
                  (Query(_rate("verseflow_ws_slow_consumer_cutoffs_total", "transport, reason", window="15m"),
                         "{{transport}} {{reason}}"),), unit="ops"),
        )),
        Row("Hosts", (
            Panel("Rooms and sessions activated per second",
                  (Query(_rate("verseflow_realtime_activations_total", "kind"), "{{kind}}"),), unit="ops"),
            Panel("Host recoveries (restarts) in the last hour",
                  (Query(f"sum by (kind) (increase({_s('verseflow_realtime_host_recoveries_total')}[1h]))",
                         "{{kind}}"),)),
        )),
    ))


def audio() -> Dashboard:
    stage = "verseflow_transcode_stage_duration_seconds"
    return Dashboard("verseflow-audio", "VerseFlow / Audio pipeline",
                     "Uploads through transcoding: the queue, stage durations and failures, upload to playable.", (
        Row("Queue and outcomes", (
            Panel("Transcoding jobs open by state", (Query(f"sum by (state) ({_s('verseflow_transcode_jobs')})",
                                                            "{{state}}"),)),
            Panel("Jobs finished per minute by outcome",
                  (Query(f"60 * {_rate('verseflow_transcode_jobs_total', 'outcome', window='15m')}", "{{outcome}}"),)),
            Panel("Upload to playable p50 / p99",
                  (Query(_quantile(0.5, "verseflow_upload_to_playable_seconds", "", "1h"), "p50"),
                   Query(_quantile(0.99, "verseflow_upload_to_playable_seconds", "", "1h"), "p99")), unit="s"),
        )),
        Row("Stages", (
            Panel("Mean stage duration", (Query(
                f"sum by (stage) (rate({_s(stage)}_sum[15m])) / sum by (stage) (rate({_s(stage)}_count[15m]))",
                "{{stage}}"),), unit="s"),
            Panel("Stage failures per minute",
                  (Query(f"60 * {_rate('verseflow_transcode_stage_failures_total', 'stage', window='15m')}",
                         "{{stage}}"),)),
            Panel("Identification latency p95 by outcome",
                  (Query(_quantile(0.95, "verseflow_identification_duration_seconds", "outcome"), "{{outcome}}"),),
                  unit="s"),
        )),
    ))


def events() -> Dashboard:
    return Dashboard("verseflow-events", "VerseFlow / Events and webhooks",
                     "The outbox relay, consumer groups' lag, and payment webhooks.", (
        Row("Outbox", (
            Panel("Outbox backlog", (Query(_s("verseflow_outbox_pending_events"), "unpublished rows"),)),
            Panel("Oldest unpublished row", (Query(_s("verseflow_outbox_oldest_pending_age_seconds"), "age"),),
                  unit="s"),
            Panel("Published per second and publish lag p99",
                  (Query(f"sum(rate({_s('verseflow_outbox_published_total')}[5m]))", "published/s"),
                   Query(_quantile(0.99, "verseflow_outbox_publish_lag_seconds", ""), "lag p99 (s)"))),
        )),
        Row("Consumer groups", (
            Panel("Lag (not yet delivered) by group",
                  (Query(f"max by (group) ({_s('verseflow_consumer_group_lag_events')})", "{{group}}"),)),
            Panel("Pending (unacknowledged) by group",
                  (Query(f"max by (group) ({_s('verseflow_consumer_group_pending_events')})", "{{group}}"),)),
            Panel("Handled per second by group and outcome",
                  (Query(_rate("verseflow_events_handled_total", "group, outcome"), "{{group}} {{outcome}}"),),
                  unit="ops"),
            Panel("Handling lag p99 by group",
                  (Query(_quantile(0.99, "verseflow_event_handling_lag_seconds", "group"), "{{group}}"),), unit="s"),
        )),
        Row("Webhooks", (
            Panel("Webhooks per minute by outcome",
                  (Query(f"60 * {_rate('verseflow_webhooks_total', 'provider, outcome', window='15m')}",
                         "{{provider}} {{outcome}}"),)),
            Panel("Webhook lag p99", (Query(_quantile(0.99, "verseflow_webhook_lag_seconds", "provider", "15m"),
                                            "{{provider}}"),), unit="s"),
        )),
    ))


def ray_serve() -> Dashboard:
    return Dashboard("verseflow-ray-serve", "VerseFlow / Ray and Serve",
                     "Serve replicas per deployment (healthy and autoscaling target) and Ray's nodes.", (
        Row("Serve", (
            Panel("Healthy replicas by deployment", (Query(
                "sum by (application, deployment) (ray_serve_deployment_replica_healthy)",
                "{{application}}/{{deployment}}"),)),
            Panel("Autoscaling target replicas", (Query(
                "max by (application, deployment) (ray_serve_autoscaling_target_replicas)",
                "{{application}}/{{deployment}}"),)),
            Panel("Ongoing requests at replicas", (Query(
                "sum by (deployment) (ray_serve_num_ongoing_requests_at_replicas)", "{{deployment}}"),)),
        )),
        Row("Nodes", (
            Panel("Nodes reporting", (Query("count(count by (ip) (ray_node_cpu_utilization))", "nodes"),),
                  kind="stat", width=6),
            Panel("CPU utilisation by node", (Query("avg by (ip) (ray_node_cpu_utilization)", "{{ip}}"),),
                  unit="percent", width=9),
            Panel("Memory used by node", (Query("sum by (ip) (ray_node_mem_used)", "{{ip}}"),),
                  unit="bytes", width=9),
        )),
    ))


def all_dashboards() -> list[Dashboard]:
    return [overview(), api(), realtime(), audio(), events(), ray_serve()]
