"""The billing use cases against Stripe's own test mode, not the local server: the same routes and SDK calls,
so a difference between the local server and Stripe shows up here.

Runs only with a test-mode key: ``VERSEFLOW_STRIPE_LIVE_TEST_KEY=sk_test_... make test PYTEST_ARGS="-m stripe_live"``
(without the key every test here is skipped; CI has none, and this machine cannot reach Stripe). Webhooks are
not covered here: Stripe cannot deliver to a test process on localhost (use ``stripe listen`` for that);
the webhook tests run against the local server, which signs exactly as Stripe does.
"""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
from pydantic import SecretStr

from tests.conftest import Api, running_app

LIVE_KEY = os.environ.get("VERSEFLOW_STRIPE_LIVE_TEST_KEY", "")

pytestmark = [
    pytest.mark.stripe_live,
    pytest.mark.skipif(not LIVE_KEY.startswith("sk_test_"),
                       reason="set VERSEFLOW_STRIPE_LIVE_TEST_KEY to a Stripe test-mode key (sk_test_...)"),
]


@pytest.fixture(scope="module")
async def live_http(settings, pool):
    live = settings.model_copy(update={"stripe_secret_key": SecretStr(LIVE_KEY), "stripe_api_base": None,
                                       "stripe_max_network_retries": 2})
    async with running_app(live) as application:
        transport = httpx.ASGITransport(app=application, client=("10.0.0.3", 12345))
        async with httpx.AsyncClient(transport=transport, base_url="http://verseflow.test", timeout=60) as client:
            yield client


async def _listener(http: httpx.AsyncClient) -> dict:
    return await Api(http).user("listener")


async def test_subscribing_twice_concurrently_makes_one_subscription(live_http):
    user = await _listener(live_http)
    request = {"plan": "premium", "payment_method": "pm_card_visa"}
    answers = await asyncio.gather(*[live_http.post("/v1/billing/subscription", json=request,
                                                    headers=user["headers"]) for _ in range(2)])
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert len({a.json()["subscription"]["id"] for a in answers}) == 1
    assert answers[0].json()["plan"] == "premium"


async def test_a_declined_card_is_a_402(live_http):
    user = await _listener(live_http)
    refused = await live_http.post("/v1/billing/subscription", json={"plan": "premium",
                                                                     "payment_method": "pm_card_chargeDeclined"},
                                   headers=user["headers"])
    assert refused.status_code == 402, refused.text
    assert (await live_http.get("/v1/me/subscription", headers=user["headers"])).json()["plan"] == "free"


async def test_upgrade_cancel_and_resume(live_http):
    user = await _listener(live_http)
    made = await live_http.post("/v1/billing/subscription", json={"plan": "premium", "payment_method": "pm_card_visa"},
                                headers=user["headers"])
    assert made.status_code == 200, made.text
    up = await live_http.patch("/v1/billing/subscription", json={"plan": "family"}, headers=user["headers"])
    assert up.status_code == 200 and up.json()["plan"] == "family", up.text
    cancelled = await live_http.post("/v1/billing/subscription/cancel", headers=user["headers"])
    assert cancelled.json()["subscription"]["cancel_at_period_end"] is True
    resumed = await live_http.post("/v1/billing/subscription/resume", headers=user["headers"])
    assert resumed.json()["subscription"]["cancel_at_period_end"] is False
