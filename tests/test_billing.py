"""Subscribing, plan changes and Stripe webhooks end to end: the real ``stripe`` SDK against the local
Stripe server, the real app (in-process) on real PostgreSQL and Redis. Webhooks are the exact signed
deliveries the server made, captured by a receiver and handed to the app (so tests choose order,
duplicates and timing)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from billing import ledger, subscriptions
from billing.entitlements import ALL_RUNGS, STANDARD_RUNGS
from stripelocal import LocalStripe, sign
from tests.conftest import Api, running_app
from tests.stripe_support import WebhookSink, client_for, wait_for

WEBHOOK_SECRET = "whsec_test_" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def stripe_server(sink):
    server = LocalStripe(webhook_url=sink.url, webhook_secret=WEBHOOK_SECRET).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sdk(stripe_server):
    return client_for(stripe_server, max_network_retries=0)


@pytest.fixture(scope="module")
def billing_settings(settings, stripe_server):
    from pydantic import SecretStr

    return settings.model_copy(update={"stripe_secret_key": SecretStr(stripe_server.api_key),
                                       "stripe_api_base": stripe_server.url,
                                       "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET)})


@pytest.fixture(scope="module")
async def billing_app(billing_settings, pool):
    async with running_app(billing_settings) as application:
        yield application


@pytest.fixture
async def http(billing_app):
    transport = httpx.ASGITransport(app=billing_app, client=("10.0.0.2", 12345))
    async with httpx.AsyncClient(transport=transport, base_url="http://verseflow.test") as client:
        yield client


class Webhooks:
    """Hands the server's signed deliveries to the app, each once unless a test says otherwise."""

    def __init__(self, server: LocalStripe, sink: WebhookSink, http: httpx.AsyncClient) -> None:
        self.server, self.sink, self.http = server, sink, http

    def settle(self) -> list[dict]:
        """Every delivery of every event so far (waits for the server to have sent them all)."""
        wanted = {e["id"] for e in self.server.engine.events}
        wait_for(lambda: wanted <= {d["headers"].get("Stripe-Signature") and _event_id(d) for d in self.sink.received})
        return list(self.sink.received)

    async def send(self, delivery: dict) -> httpx.Response:
        return await self.http.post("/v1/billing/stripe/webhook", content=delivery["body"],
                                    headers={"Stripe-Signature": delivery["headers"]["Stripe-Signature"],
                                             "Content-Type": "application/json"})

    async def deliver_new(self, *, reverse: bool = False) -> list[str]:
        deliveries = [d for d in self.settle() if not d.get("sent")]
        for delivery in deliveries:
            delivery["sent"] = True
        results = []
        for delivery in reversed(deliveries) if reverse else deliveries:
            response = await self.send(delivery)
            assert response.status_code == 200, response.text
            results.append(response.json()["result"])
        return results


def _event_id(delivery: dict) -> str:
    return json.loads(delivery["body"])["id"]


@pytest.fixture
def hooks(stripe_server, sink, http):
    return Webhooks(stripe_server, sink, http)


async def listener(http: httpx.AsyncClient) -> dict:
    return await Api(http).user("listener")


async def test_a_card_saved_through_a_setup_intent_pays_for_the_subscription(http, sdk, pool, billing_settings):
    user = await listener(http)
    assert (await http.post("/v1/billing/setup-intent")).status_code == 401
    opened = await http.post("/v1/billing/setup-intent", headers=user["headers"])
    assert opened.status_code == 201, opened.text
    secret = opened.json()["client_secret"]
    intent = sdk.v1.setup_intents.retrieve(secret.split("_secret_")[0])
    customer = await pool.fetchval("SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1",
                                   uuid.UUID(user["id"]))
    assert intent.client_secret == secret and intent.customer == customer and intent.status == "requires_payment_method"
    assert intent.payment_method_types == ["card"] and intent.usage == "off_session"
    # What Stripe.js's confirmSetup does in the browser with the Payment Element's card:
    saved = sdk.v1.setup_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    made = await http.post("/v1/billing/subscription", json={"plan": "premium", "payment_method": saved.payment_method},
                           headers=user["headers"])
    assert made.status_code == 200, made.text
    assert made.json()["plan"] == "premium" and made.json()["subscription"]["status"] == "active"
    paid = [c for c in sdk.v1.charges.list(params={"customer": customer}).data if c.paid]
    assert [c.payment_method for c in paid] == [saved.payment_method]
    # The page learns the publishable key from the offers (none set: test cards only).
    unkeyed = billing_settings.model_copy(update={"stripe_publishable_key": None})
    assert subscriptions.plan_offers(unkeyed)["publishable_key"] is None
    keyed = billing_settings.model_copy(update={"stripe_publishable_key": "pk_test_abc"})
    assert subscriptions.plan_offers(keyed)["publishable_key"] == "pk_test_abc"


async def test_subscribe_pays_once_and_shows_the_subscription(http, sdk, hooks, pool):
    user = await listener(http)
    me = await http.get("/v1/me/subscription", headers=user["headers"])
    assert me.json() == {"plan": "free", "subscription": None, "next_invoice": None}
    offers = (await http.get("/v1/billing/plans")).json()  # what the subscription page shows, signed in or not
    assert offers["test_mode"] is True  # the local Stripe server's sk_test_ key
    assert {(o["plan"], o["amount"], o["currency"]) for o in offers["plans"]} == {("premium", 999, "eur"),
                                                                                  ("family", 1599, "eur")}
    made = await http.post("/v1/billing/subscription", json={"plan": "premium", "payment_method": "pm_card_visa"},
                           headers=user["headers"])
    assert made.status_code == 200, made.text
    body = made.json()
    assert body["plan"] == "premium" and body["subscription"]["status"] == "active"
    assert body["next_invoice"]["amount_due"] == 999 and body["next_invoice"]["currency"] == "eur"
    again = await http.post("/v1/billing/subscription", json={"plan": "premium", "payment_method": "pm_card_visa"},
                            headers=user["headers"])
    assert again.json()["subscription"]["id"] == body["subscription"]["id"]
    other = await http.post("/v1/billing/subscription", json={"plan": "family"}, headers=user["headers"])
    assert other.status_code == 409
    customer = await pool.fetchval("SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1",
                                   uuid.UUID(user["id"]))
    assert len([c for c in sdk.v1.charges.list(params={"customer": customer}).data if c.paid]) == 1

    await hooks.deliver_new()
    async with pool.acquire() as conn:
        invoices = await ledger.entries_for(conn, "stripe:invoice.paid:")
        mine = [e for e in invoices if e["metadata"]["customer"] == customer]
        assert len(mine) == 1
        assert (await ledger.trial_balance(conn)).get("eur", 0) == 0


async def test_a_declined_card_is_a_402_and_grants_nothing(http):
    user = await listener(http)
    refused = await http.post("/v1/billing/subscription", json={"plan": "premium",
                                                                "payment_method": "pm_card_chargeDeclined"},
                              headers=user["headers"])
    assert refused.status_code == 402
    assert refused.json()["decline_code"] == "generic_decline"
    failing = await http.post("/v1/billing/subscription", json={"plan": "premium",
                                                                "payment_method": "pm_card_chargeCustomerFail"},
                              headers=user["headers"])
    assert failing.status_code == 402
    assert (await http.get("/v1/me/subscription", headers=user["headers"])).json()["plan"] == "free"
    ok = await http.post("/v1/billing/subscription", json={"plan": "premium", "payment_method": "pm_card_visa"},
                         headers=user["headers"])
    assert ok.status_code == 200 and ok.json()["plan"] == "premium"


async def test_the_same_subscribe_request_sent_concurrently_makes_one_subscription_and_one_charge(http, sdk, pool):
    user = await listener(http)
    request = {"plan": "family", "payment_method": "pm_card_visa"}
    answers = await asyncio.gather(*[http.post("/v1/billing/subscription", json=request, headers=user["headers"])
                                     for _ in range(4)])
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert len({a.json()["subscription"]["id"] for a in answers}) == 1
    customer = await pool.fetchval("SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1",
                                   uuid.UUID(user["id"]))
    assert len(sdk.v1.subscriptions.list(params={"customer": customer, "status": "all"}).data) == 1
    assert len([c for c in sdk.v1.charges.list(params={"customer": customer}).data if c.paid]) == 1
    assert len(sdk.v1.customers.list(params={"email": user["email"]}).data) == 1


async def test_upgrade_downgrade_cancel_and_resume(http, hooks, pool):
    user = await listener(http)
    await http.post("/v1/billing/subscription", json={"plan": "premium", "payment_method": "pm_card_visa"},
                    headers=user["headers"])
    up = await http.patch("/v1/billing/subscription", json={"plan": "family"}, headers=user["headers"])
    assert up.status_code == 200, up.text
    assert up.json()["plan"] == "family" and up.json()["subscription"]["price"]["amount"] == 1599
    down = await http.patch("/v1/billing/subscription", json={"plan": "premium"}, headers=user["headers"])
    assert down.json()["plan"] == "premium"
    # the downgrade's credit (unused family time) is on the next invoice, charged only then
    assert down.json()["next_invoice"]["amount_due"] < 999
    cancel = await http.post("/v1/billing/subscription/cancel", headers=user["headers"])
    body = cancel.json()
    assert body["subscription"]["cancel_at_period_end"] and body["plan"] == "premium" and body["next_invoice"] is None
    resumed = await http.post("/v1/billing/subscription/resume", headers=user["headers"])
    assert not resumed.json()["subscription"]["cancel_at_period_end"]

    await hooks.deliver_new()
    customer = await pool.fetchval("SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1",
                                   uuid.UUID(user["id"]))
    async with pool.acquire() as conn:
        entries = [e for e in await ledger.entries_for(conn, "stripe:invoice.paid:")
                   if e["metadata"]["customer"] == customer]
        assert len(entries) == 2  # the first month, and the upgrade's prorated invoice
        postings = await conn.fetch(
            "SELECT a.code, p.amount FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id"
            " WHERE p.entry_id = $1", entries[1]["id"])
        codes = {r["code"]: r["amount"] for r in postings}
        assert codes["revenue:family"] < 0 and codes["revenue:premium"] > 0  # upgrade: premium credited back
        assert (await ledger.trial_balance(conn)).get("eur", 0) == 0


async def test_forged_stale_replayed_duplicated_and_reordered_webhooks(http, hooks, pool, billing_settings):
    user = await listener(http)
    await http.post("/v1/billing/subscription", json={"plan": "premium", "payment_method": "pm_card_visa"},
                    headers=user["headers"])
    deliveries = [d for d in hooks.settle() if not d.get("sent")]
    for d in deliveries:
        d["sent"] = True
    sample = deliveries[-1]
    forged = await http.post("/v1/billing/stripe/webhook", content=sample["body"].replace(b'"livemode": false',
                                                                                       b'"livemode": true'),
                             headers={"Stripe-Signature": sample["headers"]["Stripe-Signature"]})
    assert forged.status_code == 400
    stale = await http.post("/v1/billing/stripe/webhook", content=sample["body"],
                            headers={"Stripe-Signature": sign(sample["body"].decode(), WEBHOOK_SECRET,
                                                              int(time.time()) - 301)})
    assert stale.status_code == 400
    unsigned = await http.post("/v1/billing/stripe/webhook", content=sample["body"])
    assert unsigned.status_code == 400

    # newest first, each twice: the outcome is the same as in order, once
    results = []
    for delivery in reversed(deliveries):
        for _ in range(2):
            response = await hooks.send(delivery)
            assert response.status_code == 200
            results.append(response.json()["result"])
    handled = [d for d in deliveries if json.loads(d["body"])["type"] in subscriptions.HANDLED_EVENTS]
    assert handled and results.count("duplicate") == len(handled)  # the others are ignored, each time
    replay = await hooks.send(handled[0])
    assert replay.json()["result"] == "duplicate"
    row = await pool.fetchrow("SELECT plan, status FROM billing_subscriptions WHERE user_id = $1",
                              uuid.UUID(user["id"]))
    assert tuple(row) == ("premium", "active")
    customer = await pool.fetchval("SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1",
                                   uuid.UUID(user["id"]))
    async with pool.acquire() as conn:
        assert len([e for e in await ledger.entries_for(conn, "stripe:invoice.paid:")
                    if e["metadata"]["customer"] == customer]) == 1
        assert (await ledger.trial_balance(conn)).get("eur", 0) == 0


async def test_a_failed_renewal_keeps_the_plan_for_the_grace_period_then_recovers(http, sdk, hooks, pool,
                                                                                   billing_settings):
    from accounts.model import Principal, Role
    from audio.service import stream_links

    user = await listener(http)
    who = Principal(uuid.UUID(user["id"]), Role.LISTENER)
    clock = sdk.v1.test_helpers.test_clocks.create(params={"frozen_time": int(time.time())})
    await subscriptions.subscribe(pool, billing_settings, who, plan="premium", payment_method="pm_card_visa",
                                  test_clock=clock.id)
    track = {"id": uuid.uuid4(), "owned": False, "duration_s": 10, "media_prefix": "media/abc",
             "media": {"index": {"aac": ["aac64", "aac128", "aac256"], "mp3": ["mp3_128", "mp3_320"]},
                       "files": {"hls": "m.m3u8", "dash": "m.mpd", "mp3_128": "128.mp3", "mp3_320": "320.mp3",
                                 "waveform-256": "w.json"}}}

    async def rungs(now: datetime | None = None) -> set[str]:
        plan = await subscriptions.plan_of(pool, billing_settings, who.user_id, now=now)
        return set(stream_links(billing_settings, who, track, plan=plan)["rungs"])

    assert await rungs() == set(ALL_RUNGS)
    customer = await pool.fetchval("SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1", who.user_id)
    failing = sdk.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer})
    sdk.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": failing.id}})
    sdk.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": clock.frozen_time + 32 * 86400})
    await hooks.deliver_new(reverse=True)
    view = (await http.get("/v1/me/subscription", headers=user["headers"])).json()
    assert view["subscription"]["status"] == "past_due" and view["plan"] == "premium"  # within the grace period
    assert await rungs() == set(ALL_RUNGS)
    later = datetime.now(UTC) + timedelta(seconds=billing_settings.billing_past_due_grace_s + 1)
    assert await rungs(later) == set(STANDARD_RUNGS)  # after it: AAC 256 and MP3 320 are gone

    invoice = sdk.v1.invoices.list(params={"customer": customer, "status": "open"}).data[0]
    good = sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
    sdk.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": good.id}})
    sdk.v1.invoices.pay(invoice.id)
    await hooks.deliver_new()
    assert (await http.get("/v1/me/subscription", headers=user["headers"])).json()["subscription"]["status"] == "active"
    assert await rungs(later) == set(ALL_RUNGS)

    sdk.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": failing.id}})
    now = sdk.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time
    sdk.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": now + 52 * 86400})  # dunning ends
    await hooks.deliver_new()
    final = (await http.get("/v1/me/subscription", headers=user["headers"])).json()
    assert final["subscription"]["status"] == "canceled" and final["plan"] == "free"
    assert await rungs() == set(STANDARD_RUNGS)
    async with pool.acquire() as conn:
        assert (await ledger.trial_balance(conn)).get("eur", 0) == 0


async def test_refunds_are_booked_once(http, sdk, hooks, pool):
    user = await listener(http)
    await http.post("/v1/billing/subscription", json={"plan": "premium", "payment_method": "pm_card_visa"},
                    headers=user["headers"])
    customer = await pool.fetchval("SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1",
                                   uuid.UUID(user["id"]))
    charge = next(c for c in sdk.v1.charges.list(params={"customer": customer}).data if c.paid)
    sdk.v1.refunds.create(params={"charge": charge.id, "amount": 300})
    await hooks.deliver_new()
    sdk.v1.refunds.create(params={"charge": charge.id, "amount": 200})
    await hooks.deliver_new()
    async with pool.acquire() as conn:
        booked = [e for e in await ledger.entries_for(conn, "stripe:refund:") if e["metadata"]["charge"] == charge.id]
        assert len(booked) == 2
        amounts = await conn.fetch(
            "SELECT p.amount FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id"
            " WHERE a.code = 'refunds' AND p.entry_id = ANY($1::uuid[]) ORDER BY p.amount", [e["id"] for e in booked])
        assert [r["amount"] for r in amounts] == [200, 300]
        assert (await ledger.trial_balance(conn)).get("eur", 0) == 0


async def test_a_plan_change_is_pushed_to_the_users_sessions_as_a_notify(http, pool, billing_settings):
    from verseflow.events.outbox import Event

    user = await listener(http)
    await http.post("/v1/billing/subscription", json={"plan": "premium", "payment_method": "pm_card_visa"},
                    headers=user["headers"])
    await http.post("/v1/billing/subscription/cancel", headers=user["headers"])
    rows = await pool.fetch("SELECT * FROM outbox WHERE type = 'billing.subscription_changed' AND aggregate_id = $1"
                            " ORDER BY seq", user["id"])
    assert [(r["payload"]["plan"], r["payload"]["status"], r["payload"]["cancel_at_period_end"]) for r in rows] == [
        ("premium", "active", False), ("premium", "active", True)]
    told = []

    async def notify(user_id, event, data):  # the port actors.room_host.notify_user fills in the event worker
        told.append((user_id, event, data))

    handler = subscriptions.handlers(billing_settings, notify)["billing.subscription_changed"][0]
    async with pool.acquire() as conn:
        await handler(conn, Event(type=rows[-1]["type"], payload=rows[-1]["payload"],
                                  aggregate_id=rows[-1]["aggregate_id"]))
    (user_id, event, data), = told
    assert (str(user_id), event) == (user["id"], "subscription.changed")
    assert data["plan"] == "premium" and data["cancel_at_period_end"] and "aac256" in data["rungs"]


def test_plan_offers_say_test_mode_only_without_a_live_key(settings):
    from pydantic import SecretStr

    live = settings.model_copy(update={"stripe_secret_key": SecretStr("sk_live_abc"), "family_members_max": 4})
    offers = subscriptions.plan_offers(live)
    assert offers["test_mode"] is False  # the subscription page then offers no test cards
    assert {o["plan"]: o["seats"] for o in offers["plans"]} == {"premium": 1, "family": 4}
    assert subscriptions.plan_offers(settings.model_copy(update={"stripe_secret_key": None}))["test_mode"] is True


async def test_an_older_event_never_rolls_a_subscription_back_and_a_newer_one_applies_without_an_api_read(
        http, sdk, stripe_server, hooks, pool, billing_settings):
    """Out-of-order delivery on a test clock (event ``created`` is the clock's time): the event's own
    subscription is stored when it is newer than the stored state, an older one changes nothing, and the
    same second is re-read from the API; the local server's request counts show which reads happened."""
    user = await listener(http)
    prices = await subscriptions.ensure_catalog(pool, subscriptions.stripe_client(billing_settings), billing_settings)
    day = 86400
    clock = sdk.v1.test_helpers.test_clocks.create(params={"frozen_time": int(time.time())})
    customer = sdk.v1.customers.create(params={"test_clock": clock.id, "metadata": {"user_id": user["id"]}})
    card = sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    sdk.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": card.id}})
    await pool.execute("INSERT INTO billing_customers (user_id, stripe_customer_id) VALUES ($1, $2)",
                       uuid.UUID(user["id"]), customer.id)
    sub = sdk.v1.subscriptions.create(params={"customer": customer.id, "metadata": {"user_id": user["id"]},
                                              "items": [{"price": prices["premium"].price_id}]})
    sdk.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": clock.frozen_time + day})
    sdk.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    sdk.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": clock.frozen_time + 2 * day})
    sdk.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": False})
    sdk.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})  # the same second as the last
    mine = [e for e in stripe_server.engine.events
            if e["type"].startswith("customer.subscription.") and e["data"]["object"]["id"] == sub.id]
    created, cancelled, resumed, cancelled_again = mine
    assert created["created"] < cancelled["created"] < resumed["created"] == cancelled_again["created"]
    by_event = {_event_id(d): d for d in hooks.settle()}
    reads = f"GET /v1/subscriptions/{sub.id}"

    async def deliver(event: dict) -> tuple[bool, int]:
        delivery = by_event[event["id"]]
        delivery["sent"] = True
        response = await hooks.send(delivery)
        assert response.status_code == 200 and response.json()["result"] == "applied", response.text
        cancel = await pool.fetchval("SELECT cancel_at_period_end FROM billing_subscriptions"
                                     " WHERE stripe_subscription_id = $1", sub.id)
        return cancel, stripe_server.app.requests[reads]

    assert await deliver(created) == (False, 0)  # nothing stored yet: the event's subscription, no read
    assert await deliver(resumed) == (False, 0)  # newer than what is stored: applied as sent, no read
    # older than what is stored, delivered late: no rollback to cancel_at_period_end, and no read either
    # (a read now would answer True, as the last update left it)
    assert await deliver(cancelled) == (False, 0)
    assert await deliver(cancelled_again) == (True, 1)  # the stored state's own second: re-read from the API
    changes = await pool.fetch("SELECT payload FROM outbox WHERE type = 'billing.subscription_changed'"
                               " AND payload->>'subscription' = $1 ORDER BY seq", sub.id)
    assert [c["payload"]["cancel_at_period_end"] for c in changes] == [False, True]

    await hooks.deliver_new()  # the rest, the first invoice's payment among them
    invoice = sdk.v1.invoices.list(params={"customer": customer.id}).data[0]
    assert stripe_server.app.requests[f"GET /v1/invoices/{invoice.id}"] == 0  # booked from the event's invoice
    async with pool.acquire() as conn:
        booked = [e for e in await ledger.entries_for(conn, "stripe:invoice.paid:")
                  if e["metadata"]["invoice"] == invoice.id]
        assert len(booked) == 1
        assert (await ledger.trial_balance(conn)).get("eur", 0) == 0


def test_an_event_is_ordered_by_its_created_second_against_the_stored_states_bounds():
    bounded = {"state_floor": 100, "state_ceiling": 110}
    assert [subscriptions._order(bounded, c) for c in (99, 100, 110, 111)] == [
        "older", "ambiguous", "ambiguous", "newer"]
    # a state read on a test clock (or stored before 0027) has no known ceiling: later events re-read it
    assert subscriptions._order({"state_floor": 100, "state_ceiling": None}, 10**10) == "ambiguous"
    assert subscriptions._order({"state_floor": None, "state_ceiling": None}, 1) == "ambiguous"
    assert subscriptions._order(None, 1) == "newer"
