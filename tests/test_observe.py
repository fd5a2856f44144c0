"""`make observe`'s Prometheus (Debian's) against a running platform under a short load: every
dashboard query returns data and every rule's metrics exist, so no panel or alert is built on a
metric nobody exports.

The platform is the test session's: Ray with its metrics agent, Serve (API, realtime, media), an
edge, the room and session hosts, a real event worker and real transcoding jobs. Prometheus scrapes
Ray's agent every second with the generated rules loaded. What a healthy run cannot produce is named
in ``NEEDS_A_FAULT`` / ``NOT_IN_THIS_CLUSTER`` with the reason, and asserted absent-or-present
nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid

import httpx
import pytest
import ray

from ops import coverage, observe
from tests.audio_fixtures import write_audio
from tests.conftest import free_port
from tests.realtime_support import Client
from tests.test_audio_pipeline import RATE, artist, song, upload, wait_done

pytestmark = [pytest.mark.timeout(420),
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus")]

#: The test kills a room host, so of the metrics only a fault produces it expects the recoveries.
NEEDS_A_FAULT = coverage.NEEDS_A_FAULT - {"ray_verseflow_realtime_host_recoveries_total"}
#: Ray's node metrics come from its dashboard agent, and Serve's autoscaling metrics from deployments
#: with autoscaling: the test cluster runs neither (``make up`` runs both: ``ops.coverage`` against it
#: finds them: README.md, Prometheus).
NOT_IN_THIS_CLUSTER = {"ray_node_cpu_utilization", "ray_node_mem_used", "ray_serve_autoscaling_target_replicas"}


@contextlib.contextmanager
def prometheus(tmp_path, metrics_url: str):
    listen = f"127.0.0.1:{free_port()}"
    target = urllib.parse.urlparse(metrics_url).netloc
    command = observe.prepare(tmp_path / "prometheus", ray_targets=[target], listen=listen, scrape_interval="1s")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://{listen}"
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{base}/-/ready", timeout=1).status == 200:
                    break
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _signed_webhook(secret: str) -> tuple[bytes, str]:
    payload = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "customer.created", "created": int(time.time()),
                          "data": {"object": {"id": "cus_observe"}}}).encode()
    ts = int(time.time())
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, f"t={ts},v1={mac}"


async def _load(api, serve_url, realtime, settings, tmp_path) -> None:
    """A little of everything: API through Serve, rooms on both transports, an upload, an
    identification, a webhook, events through the worker, a room host crash."""
    async with httpx.AsyncClient(base_url=serve_url, timeout=30) as http:
        for _ in range(20):
            assert (await http.get("/health")).status_code == 200
        assert (await http.get("/v1/tracks/not-a-uuid")).status_code in (404, 422)
    owner, artist_id = await artist(api)  # registration: an event for the worker
    room = (await api.http.post("/v1/rooms", json={"name": "Observed", "visibility": "public"},
                                headers=owner["headers"])).json()["id"]
    listener = await api.user()
    for transport in ("edge", "serve"):
        a = await Client.open(realtime[transport], owner["access_token"])
        b = await Client.open(realtime[transport], listener["access_token"])
        await a.join(room)
        await b.join(room)
        for i in range(5):
            await a.send(type="chat", room=room, text=f"{transport} {i}")
        await b.chats(5)
        await a.close()
        await b.close()
    path = write_audio(tmp_path / "observed.flac", song(21, seconds=8.0), RATE)
    track = (await upload(api, owner, artist_id, path, title="Observed")).json()["id"]
    assert (await wait_done(api, track, owner["headers"]))["status"] == "ready"
    clip = write_audio(tmp_path / "clip.flac", song(21, seconds=8.0)[:, :6 * RATE], RATE)
    identified = await api.http.post("/v1/fingerprint/identify", headers=owner["headers"],
                                     files={"file": ("clip.flac", clip.read_bytes(), "audio/flac")})
    assert identified.status_code == 200, identified.text
    payload, signature = _signed_webhook(settings.stripe_webhook_secret.get_secret_value())
    hook = await api.http.post("/v1/billing/stripe/webhook", content=payload,
                               headers={"Stripe-Signature": signature, "content-type": "application/json"})
    assert hook.status_code == 200, hook.text

    await _recommendation_searches(settings)

    from actors.room_host import room_host
    host = room_host(settings, 0)
    ray.kill(host, no_restart=False)  # Ray restarts it: a recovery
    for _ in range(100):
        with contextlib.suppress(ray.exceptions.RayActorError):
            await host.stats.remote()
            break
        await asyncio.sleep(0.2)


async def _recommendation_searches(settings) -> None:
    """Searches through the platform's recommendation shards (a stored model of random vectors)."""
    from actors.rec_shard import sharded_index
    from ml import training
    from tests.test_rec_shards import random_model
    from verseflow.storage import object_store

    model = random_model(900_000 + int(time.time()) % 100_000, items=200, users=8)
    key = await asyncio.to_thread(training.store_model, object_store(settings), model)
    index = sharded_index(settings)
    assert await index.prepare(model, key) == 1.0
    for query in model.user_factors:
        assert (await index.search(model, key, query, 10, [], "dot")).answered == settings.rec_shards


async def test_every_panel_and_rule_has_data_in_a_real_prometheus(api, serve_url, realtime, media_url, settings,
                                                                  ray_metrics_url, tmp_path):
    from actors.event_worker import start_event_worker, stop_event_worker

    worker_settings = settings.model_copy(update={"events_stream": f"observe-{uuid.uuid4().hex[:8]}",
                                                  "metrics_sample_interval_s": 1.0})
    worker = await asyncio.to_thread(start_event_worker, worker_settings)
    try:
        with prometheus(tmp_path, ray_metrics_url) as base:
            await _load(api, serve_url, realtime, settings, tmp_path)
            result = None
            for _ in range(90):  # Ray's agent exports every few seconds; Prometheus scrapes every second
                await asyncio.sleep(2)
                result = coverage.check(base, NEEDS_A_FAULT | NOT_IN_THIS_CLUSTER)
                if result.complete:
                    break
            # `up` says whether Prometheus reached Ray's agent.
            assert not result.empty_panels, (result.empty_panels, coverage.query(base, "up"))
            assert not result.absent_rule_metrics, result.absent_rule_metrics
            assert not result.unrecorded, result.unrecorded  # the rules ran: each SLO's 5-minute ratio has a value
    finally:
        await asyncio.to_thread(stop_event_worker, worker)
