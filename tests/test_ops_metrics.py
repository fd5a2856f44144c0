"""Every promise has a metric: do the action, scrape, and the series is there with its labels.

Outside Ray the metrics go to ``prometheus_client``'s registry, scraped here in the exposition format
Prometheus reads (``generate_latest``); the last test runs the realtime path on real Ray and scrapes
Ray's metrics agent, where the same metrics appear with Ray's ``ray_`` prefix.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.request
import uuid

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rooms import metrics as room_metrics
from rooms import protocol
from rooms.gateway import Gateway
from rooms.model import Endpoint
from rooms.sessions import SessionHostCore
from verseflow import metrics
from verseflow.db import transaction
from verseflow.events import lag
from verseflow.events.consumer import Consumer
from verseflow.events.outbox import emit
from verseflow.events.relay import OutboxRelay
from verseflow.security import AccessClaims


@pytest.fixture
def local_metrics(monkeypatch):
    """Metrics on prometheus_client's registry even when an earlier test started Ray in this process."""
    def unbind() -> None:
        for metric in metrics.CATALOG.values():
            metric._impl, metric._ray = None, False

    unbind()
    monkeypatch.setattr(metrics, "_in_ray", lambda: False)
    yield
    unbind()  # bound again at next use, to Ray's backend if Ray runs


def scrape(text: str | None = None) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, keyed by name and labels (Ray's own labels dropped)."""
    text = prometheus_client.generate_latest().decode() if text is None else text
    ray_labels = {"Component", "NodeAddress", "SessionName", "Version", "WorkerId", "otel_scope_name",
                  "otel_scope_schema_url", "otel_scope_version"}
    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset((k, v) for k, v in s.labels.items() if k not in ray_labels))
            samples[key] = samples.get(key, 0.0) + s.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class _Socket:
    def __init__(self, *, accepts: bool = True) -> None:
        self.accepts = accepts
        self.closed: tuple[int, str] | None = None

    async def accept(self) -> None: ...

    async def receive(self):
        raise NotImplementedError

    async def send(self, frame) -> None:
        await asyncio.sleep(3600)  # a reader that never reads

    def send_nowait(self, frame) -> bool:
        return self.accepts

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def _claims() -> AccessClaims:
    return AccessClaims(user_id=uuid.uuid4(), role="listener", jti="j", expires_at=2**40, issued_at=0)


def test_declared_names_follow_prometheus_conventions():
    for name, metric in metrics.CATALOG.items():
        assert name.startswith("verseflow_"), name
        if metric.kind == "counter":
            assert name.endswith("_total"), name
        if metric.kind == "histogram":
            assert name.endswith("_seconds"), name  # every histogram here is a duration, in base units
        assert not any(unit in name for unit in ("_ms", "_milliseconds", "_minutes")), name


async def test_gateway_counts_connections_fanout_latency_deliveries_and_slow_consumer_cutoffs(local_metrics, settings):
    gateway = Gateway(settings, backend=None, authenticate=None, kind="edge")
    before = scrape()
    fast, slow = gateway._open(_Socket(), _claims()), gateway._open(_Socket(accepts=False), _claims())
    room = str(uuid.uuid4())
    for conn in (fast, slow):
        conn.rooms[room] = 0
        gateway._rooms.setdefault(room, set()).add(conn)
    accepted = int(time.time() * 1000) - 40
    gateway.deliver([("room", room, json.dumps({"type": "chat", "seq": 1, "ts": accepted}), 1, None)])
    for seq in range(2, settings.ws_outbound_queue + 3):  # the slow socket's queue overflows
        gateway.deliver([("room", room, json.dumps({"type": "chat", "seq": seq, "ts": accepted}), seq, None)])
    await asyncio.sleep(0.05)  # the cut-off closes the socket on the event loop
    after = scrape()

    assert value(after, "verseflow_ws_connections_opened_total", transport="edge") - \
        value(before, "verseflow_ws_connections_opened_total", transport="edge") == 2
    assert value(after, "verseflow_ws_connections", transport="edge") == 2
    fanouts = value(after, "verseflow_ws_fanout_latency_seconds_count", transport="edge") - \
        value(before, "verseflow_ws_fanout_latency_seconds_count", transport="edge")
    assert fanouts == settings.ws_outbound_queue + 2  # one observation per run, not per socket
    slow_fanouts = value(after, "verseflow_ws_fanout_latency_seconds_bucket", transport="edge", le="0.025") - \
        value(before, "verseflow_ws_fanout_latency_seconds_bucket", transport="edge", le="0.025")
    assert slow_fanouts == 0  # each message was accepted 40 ms before it was fanned out
    assert value(after, "verseflow_ws_messages_delivered_total", transport="edge") > \
        value(before, "verseflow_ws_messages_delivered_total", transport="edge")
    assert value(after, "verseflow_ws_slow_consumer_cutoffs_total", transport="edge", reason="queue_full") - \
        value(before, "verseflow_ws_slow_consumer_cutoffs_total", transport="edge", reason="queue_full") == 1
    assert slow.socket.closed is not None and slow.socket.closed[0] == protocol.CLOSE_SLOW_CONSUMER
    assert value(after, "verseflow_ws_closes_total", transport="edge", code="4408") >= 1

    gateway._forget(slow)
    assert value(scrape(), "verseflow_ws_connections", transport="edge") == 1


def test_a_session_activates_once_per_user(local_metrics):
    core = SessionHostCore()
    user = uuid.uuid4()
    before = value(scrape(), "verseflow_realtime_activations_total", kind="session")
    core.connect(Endpoint("g", "c1"), user)
    core.connect(Endpoint("g", "c2"), user)  # a second device: the session is already active
    assert value(scrape(), "verseflow_realtime_activations_total", kind="session") - before == 1


def test_pipeline_stages_record_durations_and_failures(local_metrics):
    from audio.pipeline import _Tracker

    tracker = _Tracker(None)
    before = scrape()
    with tracker.stage("decode"):
        pass
    with pytest.raises(ValueError), tracker.stage("ladder"):
        raise ValueError("encoder died")
    after = scrape()
    assert value(after, "verseflow_transcode_stage_duration_seconds_count", stage="decode") - \
        value(before, "verseflow_transcode_stage_duration_seconds_count", stage="decode") == 1
    assert value(after, "verseflow_transcode_stage_failures_total", stage="ladder") - \
        value(before, "verseflow_transcode_stage_failures_total", stage="ladder") == 1


async def test_transcode_queue_depth_is_sampled_from_the_jobs_table(local_metrics, pool):
    from audio import metrics as audio_metrics

    counts = await audio_metrics.sample_queue(pool)
    samples = scrape()
    assert set(counts) == {"queued", "running"}
    assert value(samples, "verseflow_transcode_jobs", state="queued") == counts["queued"]
    assert ("verseflow_transcode_jobs", frozenset({("state", "running")})) in samples


async def test_relay_and_consumer_record_lag_and_outcomes_and_the_sampler_sets_backlogs(local_metrics, pool, redis,
                                                                                         settings):
    isolated = settings.model_copy(update={"events_stream": f"events-{uuid.uuid4().hex[:8]}",
                                           "consumer_block_ms": 10})
    group = f"metrics-{uuid.uuid4().hex[:6]}"

    async def handled(conn, event) -> None:
        return None

    before = scrape()
    async with transaction(pool) as conn:
        await emit(conn, "test.metrics", "agg")
    relay = OutboxRelay(pool, redis, isolated)
    assert await relay.publish_pending() >= 1
    consumer = Consumer(pool, redis, isolated, group=group, handlers={"test.metrics": [handled]})
    while await consumer.process_once():
        pass
    seen = await lag.sample(pool, redis, consumer.stream, [group])
    after = scrape()

    assert value(after, "verseflow_outbox_published_total") > value(before, "verseflow_outbox_published_total")
    assert value(after, "verseflow_outbox_publish_lag_seconds_count") > \
        value(before, "verseflow_outbox_publish_lag_seconds_count")
    assert value(after, "verseflow_events_handled_total", group=group, outcome="handled") == 1
    assert value(after, "verseflow_event_handling_lag_seconds_count", group=group) >= 1
    assert value(after, "verseflow_consumer_group_lag_events", group=group) == 0 == seen[f"{group}.lag"]
    assert value(after, "verseflow_consumer_group_pending_events", group=group) == 0
    assert ("verseflow_outbox_pending_events", frozenset()) in after
    assert ("verseflow_outbox_oldest_pending_age_seconds", frozenset()) in after


def _signed(secret: str, body: dict) -> tuple[bytes, str]:
    payload = json.dumps(body).encode()
    ts = int(time.time())
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, f"t={ts},v1={mac}"


async def test_webhooks_count_outcomes_and_lag(local_metrics, pool, settings):
    from billing import subscriptions
    from verseflow.errors import MalformedRequest

    secret = settings.stripe_webhook_secret.get_secret_value()
    body = {"id": f"evt_{uuid.uuid4().hex}", "type": "customer.created", "created": int(time.time()) - 5,
            "data": {"object": {"id": "cus_1"}}}
    before = scrape()
    assert await subscriptions.handle_webhook(pool, settings, *_signed(secret, body)) == "ignored"
    with pytest.raises(MalformedRequest):
        await subscriptions.handle_webhook(pool, settings, *_signed("whsec_wrong", body))
    after = scrape()
    for outcome in ("ignored", "rejected"):
        assert value(after, "verseflow_webhooks_total", provider="stripe", outcome=outcome) - \
            value(before, "verseflow_webhooks_total", provider="stripe", outcome=outcome) == 1
    late = value(after, "verseflow_webhook_lag_seconds_count", provider="stripe") - \
        value(after, "verseflow_webhook_lag_seconds_bucket", provider="stripe", le="1.0")
    assert late - (value(before, "verseflow_webhook_lag_seconds_count", provider="stripe")
                   - value(before, "verseflow_webhook_lag_seconds_bucket", provider="stripe", le="1.0")) == 1


@pytest.mark.timeout(180)
async def test_on_ray_the_realtime_metrics_reach_rays_metrics_agent(api, realtime, ray_metrics_url):
    """A chat through the edge: Ray's agent exports the edge's and the room host's metrics."""
    from tests.realtime_support import Client

    host = await api.user("artist")
    response = await api.http.post("/v1/rooms", json={"name": "Metrics", "visibility": "public"},
                                   headers=host["headers"])
    room = response.json()["id"]
    client = await Client.open(realtime["edge"], host["access_token"])
    await client.join(room)
    await client.send(type="chat", room=room, text="counted")
    await client.chats(1)

    wanted = [("ray_verseflow_ws_fanout_latency_seconds_count", {"transport": "edge"}),
              ("ray_verseflow_ws_connections_opened_total", {"transport": "edge"}),
              ("ray_verseflow_ws_messages_delivered_total", {"transport": "edge"}),
              ("ray_verseflow_realtime_activations_total", {"kind": "room"}),
              ("ray_verseflow_realtime_activations_total", {"kind": "session"})]
    missing = wanted
    for _ in range(60):  # Ray's agent exports what the workers reported every few seconds
        samples = scrape(await asyncio.to_thread(_get, ray_metrics_url))
        missing = [(n, labels) for n, labels in wanted if value(samples, n, **labels) < 1]
        if not missing:
            break
        await asyncio.sleep(1)
    await client.close()
    assert not missing


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_room_metric_declarations_are_in_the_catalogue():
    for metric in (room_metrics.CONNECTIONS, room_metrics.FANOUT_LATENCY, room_metrics.HOST_RECOVERIES):
        assert metrics.CATALOG[metric.name] is metric


def test_a_metric_used_before_ray_init_moves_to_rays_backend(ray_cluster):
    """The test process used these metrics before Ray started (tests above): they now export through Ray."""
    metrics.HTTP_REQUESTS.inc(route="/probe", method="GET", status="200")
    assert metrics.HTTP_REQUESTS._ray
