"""The local Stripe server (stripelocal/) driven by the real ``stripe`` SDK, as VerseFlow drives Stripe."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import stripe

from stripelocal import LocalStripe
from tests.stripe_support import client_for, wait_for


@pytest.fixture(scope="module")
def server(sink):
    local = LocalStripe(webhook_url=sink.url, retry_delays_s=(0.2, 0.2)).start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def client(server) -> stripe.StripeClient:
    return client_for(server, max_network_retries=0)


@pytest.fixture(scope="module")
def prices(client):
    premium = client.v1.products.create(params={"name": "Premium"})
    family = client.v1.products.create(params={"name": "Family"})
    recurring = {"interval": "month"}
    return {
        "premium": client.v1.prices.create(params={"product": premium.id, "unit_amount": 999, "currency": "eur",
                                                   "recurring": recurring, "lookup_key": "t_premium"}),
        "family": client.v1.prices.create(params={"product": family.id, "unit_amount": 1599, "currency": "eur",
                                                  "recurring": recurring, "lookup_key": "t_family"}),
    }


def customer_on_clock(client, card: str = "pm_card_visa"):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": 1_780_000_000})  # 2026-05-28
    customer = client.v1.customers.create(params={"email": "listener@example.com", "test_clock": clock.id})
    method = client.v1.payment_methods.attach(card, params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": method.id}})
    return clock, customer


def advance(client, clock, seconds: int):
    current = client.v1.test_helpers.test_clocks.retrieve(clock.id)
    advanced = client.v1.test_helpers.test_clocks.advance(clock.id,
                                                          params={"frozen_time": current.frozen_time + seconds})
    assert advanced.status == "ready"
    return advanced


def test_subscribing_with_a_good_card_pays_the_first_invoice_in_current_shapes(client, prices):
    clock, customer = customer_on_clock(client)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": prices["premium"].id}],
                                                 "expand": ["latest_invoice.payments"]})
    assert sub.status == "active"
    item = sub["items"].data[0]
    assert item.price.id == prices["premium"].id
    assert item.current_period_start == clock.frozen_time
    assert item.current_period_end == 1_782_678_400  # 2026-06-28, same time of day: one calendar month
    invoice = sub.latest_invoice
    assert invoice.status == "paid" and invoice.amount_paid == 999 and invoice.billing_reason == "subscription_create"
    assert invoice.parent.subscription_details.subscription == sub.id
    assert invoice.lines.data[0].pricing.price_details.price == prices["premium"].id
    intent = client.v1.payment_intents.retrieve(invoice.payments.data[0].payment.payment_intent,
                                                params={"expand": ["latest_charge.balance_transaction"]})
    assert intent.status == "succeeded"
    txn = intent.latest_charge.balance_transaction
    assert (txn.amount, txn.fee, txn.net) == (999, 29 + 30, 999 - 59)  # 2.9 % + 30


def test_an_invoices_payments_are_listed_by_invoice_and_status_and_requests_are_counted(client, prices, server):
    _, customer = customer_on_clock(client, card="pm_card_chargeCustomerFail")
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": prices["premium"].id}]})
    invoice_id = sub.latest_invoice
    good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.v1.invoices.pay(invoice_id, params={"payment_method": good.id})
    every = client.v1.invoice_payments.list(params={"invoice": invoice_id}).data
    assert [p.status for p in every] == ["paid", "canceled"]  # newest first: the failed attempt, then the paid one
    paid = client.v1.invoice_payments.list(params={"invoice": invoice_id, "status": "paid"}).data
    assert [p.id for p in paid] == [every[0].id] and paid[0].invoice == invoice_id
    counted = client.v1.invoices.retrieve(invoice_id)
    assert server.app.requests[f"GET /v1/invoices/{counted.id}"] == 1
    assert server.app.requests["GET /v1/invoice_payments"] >= 2


def test_declined_card_is_refused_when_attached(client):
    customer = client.v1.customers.create(params={"email": "x@example.com"})
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": customer.id})
    assert caught.value.code == "card_declined"
    assert caught.value.http_status == 402
    assert caught.value.error.decline_code == "generic_decline"
    assert client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"}).data == []


def test_a_setup_intent_saves_a_card_for_the_customer_and_a_declined_one_leaves_it_waiting(client):
    customer = client.v1.customers.create(params={"email": "element@example.com"})
    intent = client.v1.setup_intents.create(params={"customer": customer.id,
                                                    "automatic_payment_methods": {"enabled": True}})
    assert intent.status == "requires_payment_method" and intent.usage == "off_session"
    assert intent.client_secret.startswith(intent.id + "_secret_")
    with pytest.raises(stripe.CardError) as caught:
        client.v1.setup_intents.confirm(intent.id, params={"payment_method": "pm_card_chargeDeclined"})
    assert caught.value.code == "card_declined"
    waiting = client.v1.setup_intents.retrieve(intent.id)
    assert waiting.status == "requires_payment_method" and waiting.last_setup_error.code == "card_declined"
    saved = client.v1.setup_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    assert saved.status == "succeeded"
    method = client.v1.payment_methods.retrieve(saved.payment_method)
    assert method.customer == customer.id and method.card.last4 == "4242"
    # Attaching it again to the same customer (as a subscription request naming it does) is harmless.
    assert client.v1.payment_methods.attach(method.id, params={"customer": customer.id}).id == method.id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.setup_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})


def test_a_card_that_attaches_but_fails_leaves_the_subscription_incomplete(client, prices):
    _, customer = customer_on_clock(client, card="pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError):
        client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": prices["premium"].id}],
                                               "payment_behavior": "error_if_incomplete"})
    assert client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"}).data == []
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": prices["premium"].id}],
                                                 "expand": ["latest_invoice"]})
    assert sub.status == "incomplete"
    assert sub.latest_invoice.status == "open" and sub.latest_invoice.amount_paid == 0


def test_idempotency_keys_replay_refuse_other_parameters_and_serialize_concurrent_requests(client, prices):
    _, customer = customer_on_clock(client)
    params = {"customer": customer.id, "items": [{"price": prices["premium"].id}]}
    first = client.v1.subscriptions.create(params=params, options={"idempotency_key": "sub-key-1"})
    again = client.v1.subscriptions.create(params=params, options={"idempotency_key": "sub-key-1"})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.subscriptions.create(params={**params, "metadata": {"x": "1"}},
                                       options={"idempotency_key": "sub-key-1"})
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={}, options={"idempotency_key": "sub-key-1"})

    results: list[str] = []
    barrier = threading.Barrier(8)

    def subscribe() -> None:
        barrier.wait()
        results.append(client.v1.subscriptions.create(params=params, options={"idempotency_key": "sub-key-2"}).id)

    threads = [threading.Thread(target=subscribe) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    subs = client.v1.subscriptions.list(params={"customer": customer.id}).data
    assert sorted(s.id for s in subs) == sorted({first.id, results[0]})
    charges = [c for c in client.v1.charges.list(params={"customer": customer.id}).data if c.paid]
    assert len(charges) == 2  # one per key, not one per request


def test_upgrade_prorates_and_invoices_now_downgrade_credits_the_next_invoice(client, prices):
    clock, customer = customer_on_clock(client)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": prices["premium"].id}]})
    item = sub["items"].data[0]
    length = item.current_period_end - item.current_period_start
    advance(client, clock, length // 2)
    now = client.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time
    share = (item.current_period_end - now) / length
    up = client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": item.id, "price": prices["family"].id}], "proration_behavior": "always_invoice",
        "expand": ["latest_invoice"]})
    lines = sorted(line.amount for line in up.latest_invoice.lines.data)
    assert lines == [-round(999 * share), round(1599 * share)]
    assert all(line.parent.invoice_item_details.proration for line in up.latest_invoice.lines.data)
    assert up.latest_invoice.status == "paid" and up.latest_invoice.billing_reason == "subscription_update"
    assert up["items"].data[0].price.id == prices["family"].id

    down = client.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "price": prices["premium"].id}]})
    assert down.latest_invoice == up.latest_invoice.id  # create_prorations: nothing invoiced now
    preview = client.v1.invoices.create_preview(params={"subscription": sub.id})
    assert preview.total == 999 - round(1599 * share) + round(999 * share)
    advance(client, clock, length)
    renewed = client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice"]})
    assert renewed.latest_invoice.billing_reason == "subscription_cycle"
    assert renewed.latest_invoice.total == preview.total


def test_cancel_at_period_end_resume_and_end(client, prices):
    clock, customer = customer_on_clock(client)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": prices["premium"].id}]})
    end = sub["items"].data[0].current_period_end
    canceling = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert canceling.cancel_at_period_end and canceling.cancel_at == end and canceling.status == "active"
    resumed = client.v1.subscriptions.resume(sub.id)
    assert not resumed.cancel_at_period_end and resumed.cancel_at is None
    client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    advance(client, clock, end - clock.frozen_time + 60)
    ended = client.v1.subscriptions.retrieve(sub.id)
    assert ended.status == "canceled" and ended.ended_at == end
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1  # no renewal invoice


def test_failed_renewal_goes_past_due_recovers_and_dunning_cancels(client, prices):
    clock, customer = customer_on_clock(client)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": prices["premium"].id}]})
    failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": failing.id}})
    advance(client, clock, 31 * 86400)
    past_due = client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice"]})
    assert past_due.status == "past_due"
    invoice = past_due.latest_invoice
    assert invoice.status == "open" and invoice.attempt_count == 1 and invoice.next_payment_attempt is not None
    good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    paid = client.v1.invoices.pay(invoice.id, params={"payment_method": good.id})
    assert paid.status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"

    advance(client, clock, 31 * 86400)  # the next renewal fails again (the default card still fails)
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    advance(client, clock, 20 * 86400)  # all retries (3, 5, 7 days) fail
    final = client.v1.subscriptions.retrieve(sub.id)
    assert final.status == "canceled"
    assert final.cancellation_details.reason == "payment_failed"


def test_refunds_update_the_charge_and_refuse_too_much(client, prices):
    _, customer = customer_on_clock(client)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": prices["premium"].id}],
                                                 "expand": ["latest_invoice.payments.data.payment.payment_intent"]})
    charge_id = sub.latest_invoice.payments.data[0].payment.payment_intent.latest_charge
    refund = client.v1.refunds.create(params={"charge": charge_id, "amount": 400})
    assert refund.status == "succeeded" and refund.amount == 400
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create(params={"charge": charge_id, "amount": 600})
    charge = client.v1.charges.retrieve(charge_id)
    assert charge.amount_refunded == 400 and not charge.refunded


def test_errors_use_stripes_envelope(client, server):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.retrieve("cus_nope")
    assert caught.value.code == "resource_missing" and caught.value.http_status == 404
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("sk_test_wrong", base_addresses={"api": server.url}).v1.customers.list()


def test_webhooks_are_signed_as_stripe_signs_them(client, server, sink):
    customer = client.v1.customers.create(params={"email": "signed@example.com"})
    delivery = wait_for(lambda: next((d for d in sink.received
                                      if json.loads(d["body"])["data"]["object"]["id"] == customer.id), None))
    secret = server.webhook_secret(sink.url)
    event = stripe.Webhook.construct_event(delivery["body"], delivery["headers"]["Stripe-Signature"], secret)
    assert event.type == "customer.created" and event.data.object.email == "signed@example.com"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery["body"].replace(b"signed@", b"forged@"),
                                       delivery["headers"]["Stripe-Signature"], secret)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery["body"], delivery["headers"]["Stripe-Signature"], "whsec_other")


def test_webhook_switches_duplicate_reorder_hold_and_retry(client, server, sink):
    server.deliverer.configure(hold=True, reorder=True, duplicates=2)
    try:
        made = [client.v1.customers.create(params={"email": f"order{i}@example.com"}).id for i in range(3)]
        seen = len(sink.received)
        time.sleep(0.2)
        assert len(sink.received) == seen  # held
        server.deliverer.release()
        ids = wait_for(lambda: (lambda got: got if len(got) == 6 else None)(
            [e["data"]["object"]["id"] for e in sink.events() if e["data"]["object"]["id"] in made]))
        assert ids == [made[2], made[2], made[1], made[1], made[0], made[0]]
    finally:
        server.deliverer.configure(hold=False, reorder=False, duplicates=1)
    sink.status = 500
    try:
        customer = client.v1.customers.create(params={"email": "retry@example.com"})
        wait_for(lambda: sum(1 for e in sink.events() if e["data"]["object"]["id"] == customer.id) >= 2)
    finally:
        sink.status = 200
    wait_for(lambda: any(d["status"] == 200 and json.loads(d["body"])["data"]["object"]["id"] == customer.id
                         for d in sink.received))


def test_state_survives_a_restart_with_a_state_file(tmp_path: Path):
    state = tmp_path / "stripe.json"
    first = LocalStripe(state_file=state).start()
    try:
        customer = client_for(first).v1.customers.create(params={"email": "kept@example.com"},
                                                         options={"idempotency_key": "keep-1"})
    finally:
        first.stop()
    second = LocalStripe(api_key=first.api_key, state_file=state).start()
    try:
        client = client_for(second)
        assert client.v1.customers.retrieve(customer.id).email == "kept@example.com"
        replay = client.v1.customers.create(params={"email": "kept@example.com"},
                                            options={"idempotency_key": "keep-1"})
        assert replay.id == customer.id
    finally:
        second.stop()


def test_embedded_starter_runs_the_server_as_a_process_that_keeps_its_state(tmp_path: Path):
    from tests.conftest import free_port
    from verseflow.embedded import EmbeddedStripe
    from verseflow.settings import Settings

    embedded = EmbeddedStripe(tmp_path / "stripe", free_port(), "http://127.0.0.1:9/v1/billing/stripe/webhook")
    env = embedded.start()
    try:
        settings = Settings(**{k.removeprefix("VERSEFLOW_").lower(): v for k, v in env.items()})
        client = stripe.StripeClient(settings.stripe_secret_key.get_secret_value(),
                                     base_addresses={"api": settings.stripe_api_base})
        customer = client.v1.customers.create(params={"email": "embedded@example.com"})
    finally:
        embedded.stop()
    again = EmbeddedStripe(tmp_path / "stripe", free_port(), "http://127.0.0.1:9/v1/billing/stripe/webhook")
    env_again = again.start()
    try:
        assert env_again["VERSEFLOW_STRIPE_SECRET_KEY"] == env["VERSEFLOW_STRIPE_SECRET_KEY"]
        client = stripe.StripeClient(env_again["VERSEFLOW_STRIPE_SECRET_KEY"],
                                     base_addresses={"api": env_again["VERSEFLOW_STRIPE_API_BASE"]})
        assert client.v1.customers.retrieve(customer.id).email == "embedded@example.com"
    finally:
        again.stop()
