"""Subscribing through Stripe, and applying what Stripe tells us: use cases as plain async functions.

Rules that make double billing impossible:
- Every mutating Stripe call carries our own idempotency key derived from the state it changes
  (``vf-customer-<user>``, ``vf-subscribe-<user>-<generation>-<payment method>``,
  ``vf-change-<subscription>-<price>-<row version>``...), so a retried or concurrent request replays
  the first call's answer instead of creating a second customer, subscription or charge.
- Stripe is the source of truth for a subscription, and its events arrive in any order. Under a
  per-subscription lock, the stored state carries where it stands among the subscription's events
  (``state_floor``/``state_ceiling``, seconds of event ``created``): a newer event's own object is stored
  as it is, an older event changes nothing, and anything ambiguous (the same second, an unknown age, our
  own calls) re-reads the subscription from the API; so a stale event can never overwrite a newer state.
- A webhook's state change, its ledger entries, its outbox event and the record of its event id commit
  in one transaction: a crash before commit leaves nothing (Stripe retries), a crash after commit
  makes the retry a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
import stripe

from accounts.model import Principal
from billing import entitlements, ledger
from billing.entitlements import FAMILY, FREE, PAID_PLANS
from verseflow import logs, metrics
from verseflow.db import transaction
from verseflow.errors import Conflict, DomainError, InvalidInput, MalformedRequest, NotFound
from verseflow.events import outbox
from verseflow.events.outbox import Event, emit
from verseflow.settings import Settings

log = logs.get_logger("billing.subscriptions")

LIVE_STATUSES = ("active", "trialing", "past_due", "incomplete", "unpaid", "paused")


class PaymentDeclined(DomainError):
    """Stripe refused the payment (a declined card): HTTP 402, with Stripe's decline code."""

    status, title = 402, "Payment declined"


class BillingUnavailable(DomainError):
    """Stripe could not be reached or answered an unexpected error: try again later."""

    status, title = 503, "Billing unavailable"


# --------------------------------------------------------------------------- Stripe client

# One SDK client per event loop, key and API base. The SDK talks HTTP through aiohttp: a read of the local
# server cost the webhook handler 2.2 ms of CPU through httpx and 0.4-0.6 ms through aiohttp
# (bench/README.md, "Webhooks: fewer round trips"). An aiohttp session belongs to the loop it was opened
# on, hence one client per loop; ``close_stripe_clients`` closes the current loop's at shutdown.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                    dict[tuple[str, str | None], tuple[stripe.StripeClient, stripe.AIOHTTPClient]]] = (
    weakref.WeakKeyDictionary())


def stripe_client(settings: Settings) -> stripe.StripeClient:
    """The SDK client of this key and API base for the running loop; the local server's base when ``make up``
    started it."""
    if settings.stripe_secret_key is None:
        raise BillingUnavailable("billing is not configured (no VERSEFLOW_STRIPE_SECRET_KEY)")
    key = (settings.stripe_secret_key.get_secret_value(), settings.stripe_api_base)
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    if key not in clients:
        http = stripe.AIOHTTPClient()
        clients[key] = (stripe.StripeClient(
            key[0], base_addresses={"api": settings.stripe_api_base} if settings.stripe_api_base else None,
            max_network_retries=settings.stripe_max_network_retries, http_client=http), http)
    return clients[key][0]


async def close_stripe_clients() -> None:
    """Close the HTTP sessions of the running loop's SDK clients (an app's shutdown)."""
    for _, http in _clients.pop(asyncio.get_running_loop(), {}).values():
        await http.close_async()


def _declined(error: stripe.CardError) -> PaymentDeclined:
    return PaymentDeclined(error.user_message or "the card was declined", code=error.code,
                           decline_code=getattr(error.error, "decline_code", None))


def _stripe_failure(error: stripe.StripeError) -> DomainError:
    """Stripe refused what the caller sent (422, Stripe's words), or could not be used now (503)."""
    if isinstance(error, stripe.InvalidRequestError):
        return InvalidInput(f"Stripe: {error.user_message or error}", param=error.param)
    return BillingUnavailable(f"Stripe: {error.user_message or error}")


@contextlib.contextmanager
def calling_stripe() -> Iterator[None]:
    """Stripe's errors as domain errors: 402 declined, 409 idempotency clash, 422 refused input, 503 unavailable."""
    try:
        yield
    except stripe.CardError as error:
        raise _declined(error) from None
    except stripe.IdempotencyError:
        raise Conflict("another request for this account is in progress with other parameters") from None
    except stripe.StripeError as error:
        raise _stripe_failure(error) from None


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject (or None) as a plain dict: StripeObjects are not dicts in stripe 16."""
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj or {})


def _key(*parts: object) -> str:
    text = "-".join(str(p) for p in parts)
    return text if len(text) <= 200 else "vf-" + hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- plans and prices

@dataclass(frozen=True)
class PlanPrice:
    plan: str
    price_id: str
    currency: str
    unit_amount: int
    interval: str = "month"


def plan_amounts(settings: Settings) -> dict[str, int]:
    return {entitlements.PREMIUM: settings.billing_premium_amount, entitlements.FAMILY: settings.billing_family_amount}


async def ensure_catalog(pool: asyncpg.Pool, client: stripe.StripeClient, settings: Settings) -> dict[str, PlanPrice]:
    """The Stripe Product and monthly Price of each paid plan, created once (by lookup key) and remembered.

    The lookup key names plan, currency and amount, so changing a price setting makes a new Price
    and leaves existing subscribers on theirs, as Stripe recommends.
    """
    currency = settings.billing_currency
    wanted = {plan: f"verseflow_{plan}_{currency}_{amount}_month" for plan, amount in plan_amounts(settings).items()}
    found = await client.v1.prices.list_async(params={"lookup_keys": list(wanted.values()), "limit": 100})
    by_key = {p.lookup_key: p for p in found.data}
    result: dict[str, PlanPrice] = {}
    for plan, lookup_key in wanted.items():
        price = by_key.get(lookup_key)
        if price is None:
            product_id = f"verseflow_{plan}"
            try:
                await client.v1.products.retrieve_async(product_id)
            except stripe.InvalidRequestError:
                await client.v1.products.create_async(
                    params={"id": product_id, "name": f"VerseFlow {plan.title()}",
                            "metadata": {"verseflow_plan": plan}},
                    options={"idempotency_key": _key("vf-product", product_id)})
            price = await client.v1.prices.create_async(
                params={"product": product_id, "currency": currency, "unit_amount": plan_amounts(settings)[plan],
                        "recurring": {"interval": "month"}, "lookup_key": lookup_key,
                        "metadata": {"verseflow_plan": plan}},
                options={"idempotency_key": _key("vf-price", lookup_key)})
        result[plan] = PlanPrice(plan, price.id, price.currency, price.unit_amount, price.recurring.interval)
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO billing_prices (stripe_price_id, plan, currency, unit_amount, interval)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stripe_price_id) DO NOTHING",
            [(p.price_id, p.plan, p.currency, p.unit_amount, p.interval) for p in result.values()])
    return result


# Price id -> plan, remembered by the process: a Price's plan never changes (a new amount is a new Price,
# and billing_prices rows are written once), so each webhook need not ask the database or Stripe again.
_plan_of_price_cache: dict[str, str] = {}


async def _plan_of_price(conn: asyncpg.Connection, client: stripe.StripeClient, price_id: str) -> str:
    """The plan a Price belongs to: from the process's memory, else billing_prices, else the Price's metadata."""
    plan = _plan_of_price_cache.get(price_id)
    if plan is not None:
        return plan
    plan = await conn.fetchval("SELECT plan FROM billing_prices WHERE stripe_price_id = $1", price_id)
    if plan is None:
        price = await client.v1.prices.retrieve_async(price_id)
        plan = _plain(price.metadata).get("verseflow_plan") or "other"
        await conn.execute(
            "INSERT INTO billing_prices (stripe_price_id, plan, currency, unit_amount, interval)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stripe_price_id) DO NOTHING",
            price.id, plan, price.currency, price.unit_amount, price.recurring.interval if price.recurring else "once")
    _plan_of_price_cache[price_id] = plan
    return plan


# --------------------------------------------------------------------------- reading our state

async def plan_of(pool: asyncpg.Pool | asyncpg.Connection, settings: Settings, user_id: uuid.UUID,
                  *, now: datetime | None = None) -> str:
    """The plan ``user_id`` may stream under now: what entitlements use.

    Their own subscription's plan if it grants one; otherwise ``family`` while they are a member of a
    family whose owner's own subscription grants ``family`` (billing/family.py); otherwise ``free``.
    """
    now = now or datetime.now(UTC)
    own = await own_plan(pool, settings, user_id, now=now)
    if own != FREE:
        return own
    owner = await pool.fetchval("SELECT owner_id FROM family_members WHERE member_id = $1", user_id)
    if owner is not None and await own_plan(pool, settings, owner, now=now) == FAMILY:
        return FAMILY
    return FREE


async def own_plan(pool: asyncpg.Pool | asyncpg.Connection, settings: Settings, user_id: uuid.UUID,
                   *, now: datetime | None = None) -> str:
    """The plan ``user_id``'s newest subscription grants now (``free`` without one), family seats aside."""
    row = await pool.fetchrow("SELECT plan, status, past_due_since FROM billing_subscriptions WHERE user_id = $1"
                              " ORDER BY started_at DESC LIMIT 1", user_id)
    if row is None:
        return FREE
    return entitlements.effective_plan(row["plan"], row["status"], past_due_since=row["past_due_since"],
                                       now=now or datetime.now(UTC),
                                       grace=timedelta(seconds=settings.billing_past_due_grace_s))


async def _live_row(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM billing_subscriptions WHERE user_id = $1 AND status = ANY($2::text[])"
                               " ORDER BY started_at DESC LIMIT 1", user_id, list(LIVE_STATUSES))


def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


# --------------------------------------------------------------------------- applying Stripe's state

def _get(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` or ``default`` (None for a missing ``obj`` too): for the nested optional fields of Stripe's JSON."""
    return obj[key] if obj is not None and key in obj else default


async def _read(client: stripe.StripeClient, path: str, **params: Any) -> dict[str, Any]:
    """One GET of Stripe's API as plain JSON, through the SDK (its auth, API version, retries and errors).

    The webhook path reads only a few fields of what it fetches; building StripeObjects of an expanded
    payment intent was a fifth of the handler's CPU in ``bench/billing_bench.py``.
    """
    return (await client.raw_request_async("get", path, **params)).data


async def _read_all(client: stripe.StripeClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list endpoint, page by page."""
    items: list[dict[str, Any]] = []
    while True:
        page = await _read(client, path, **params)
        items += page["data"]
        if not page["has_more"] or not page["data"]:
            return items
        params["starting_after"] = page["data"][-1]["id"]


def _path(*parts: str) -> str:
    return "/v1/" + "/".join(quote(part, safe="") for part in parts)


@dataclass(frozen=True)
class Snapshot:
    """A subscription as Stripe showed it, and where that showing stands among the subscription's events, in
    seconds of event ``created``: every event created before ``floor`` is reflected in it, no event created
    after ``ceiling`` is (None: not known)."""

    subscription: Any
    floor: int | None
    ceiling: int | None


def _order(row: asyncpg.Record | None, created: int) -> str:
    """Where an event created at ``created`` stands against the stored state: ``older`` (already reflected),
    ``newer`` (its own object is the newest state known) or ``ambiguous`` (the same second, or not known)."""
    if row is None:
        return "newer"  # nothing stored: a later, older event is then ``older`` than this one
    if row["state_floor"] is not None and created < row["state_floor"]:
        return "older"
    if row["state_ceiling"] is not None and created > row["state_ceiling"]:
        return "newer"
    return "ambiguous"


async def _read_subscription(client: stripe.StripeClient, subscription_id: str, margin_s: int,
                             event_created: int | None) -> Snapshot:
    """Re-read a subscription from the API; what our clock says about the read bounds it among its events
    (within ``margin_s`` of Stripe's clock), except on a test clock, whose time ours does not know."""
    started = time.time()
    sub = await _read(client, _path("subscriptions", subscription_id))
    finished = time.time()
    floor: int | None = None
    ceiling: int | None = None
    if not _get(sub, "test_clock"):
        floor, ceiling = int(started) - margin_s, int(finished) + 1 + margin_s
    if event_created is not None:  # the read came after this event: everything created before it is in
        floor = event_created if floor is None else max(floor, event_created)
    return Snapshot(sub, floor, ceiling)


# A subscription's transaction-scoped lock, by its Stripe id (the SQL parameter's placeholder goes in {}).
_LOCK_SQL = "pg_advisory_xact_lock(hashtext('billing:' || {}))"


async def apply_subscription(conn: asyncpg.Connection, client: stripe.StripeClient, subscription_id: str, *,
                             margin_s: int, event: WebhookEvent | None = None, use_event_object: bool = True,
                             locked: bool = False) -> tuple[str, str] | None:
    """Store one subscription's newest state known, in the caller's transaction.

    A transaction-scoped advisory lock per subscription orders concurrent appliers. Under it, an event's
    own object (``event.object``) is stored when it is newer than the stored state (created after its
    ceiling, or nothing stored yet); an event created before the stored state's floor is already reflected
    and changes nothing; anything else (the same second, a state of unknown age, no event, or
    ``use_event_object`` false) re-reads the subscription from Stripe, which is at least as new as every
    event delivered so far. So an older event delivered late never overwrites a newer state.
    ``locked``: the caller took the lock already in this transaction (the webhook path, with the event's record).
    Returns (plan before, plan after) as Stripe statuses grant them, or None if it is not ours.
    """
    if not locked:
        await conn.execute(f"SELECT {_LOCK_SQL.format('$1')}", subscription_id)
    before = await conn.fetchrow("SELECT * FROM billing_subscriptions WHERE stripe_subscription_id = $1",
                                 subscription_id)
    snapshot = None
    if event is not None and use_event_object:
        order = _order(before, event.created)
        if order == "older":
            SUBSCRIPTION_APPLIES.inc(source="older_event")
            granted = _granted(before["plan"], before["status"])
            return granted, granted
        if order == "newer":
            snapshot = Snapshot(event.object, event.created, event.created)
            SUBSCRIPTION_APPLIES.inc(source="event_object")
    if snapshot is None:
        snapshot = await _read_subscription(client, subscription_id, margin_s,
                                            event.created if event is not None else None)
        SUBSCRIPTION_APPLIES.inc(source="api_read")
    return await _store_subscription(conn, client, before, snapshot)


def _granted(plan: str, status: str) -> str:
    return plan if status in entitlements.ENTITLED_STATUSES else FREE


_STORE = """
    INSERT INTO billing_subscriptions (stripe_subscription_id, user_id, plan, status, stripe_price_id, currency,
        unit_amount, interval, current_period_start, current_period_end, cancel_at_period_end, past_due_since,
        started_at, ended_at, state_floor, state_ceiling)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
    ON CONFLICT (stripe_subscription_id) DO UPDATE SET plan = EXCLUDED.plan, status = EXCLUDED.status,
        stripe_price_id = EXCLUDED.stripe_price_id, currency = EXCLUDED.currency,
        unit_amount = EXCLUDED.unit_amount, interval = EXCLUDED.interval,
        current_period_start = EXCLUDED.current_period_start, current_period_end = EXCLUDED.current_period_end,
        cancel_at_period_end = EXCLUDED.cancel_at_period_end, past_due_since = EXCLUDED.past_due_since,
        ended_at = EXCLUDED.ended_at, state_floor = EXCLUDED.state_floor,
        state_ceiling = EXCLUDED.state_ceiling, updated_at = clock_timestamp()"""
_STORE_AND_ANNOUNCE = f"WITH stored AS ({_STORE}) {outbox.insert_sql(17)}"


async def _store_subscription(conn: asyncpg.Connection, client: stripe.StripeClient, before: asyncpg.Record | None,
                              snapshot: Snapshot) -> tuple[str, str] | None:
    sub = snapshot.subscription
    user_id = _get(_get(sub, "metadata"), "user_id")
    if not user_id:
        return None
    item = sub["items"]["data"][0]
    price = item["price"]
    plan = await _plan_of_price(conn, client, price["id"])
    status, cancel_at_period_end = sub["status"], bool(_get(sub, "cancel_at_period_end"))
    past_due_since = None
    if status == "past_due":
        past_due_since = before["past_due_since"] if before and before["past_due_since"] else datetime.now(UTC)
    floors = [f for f in (snapshot.floor, before["state_floor"] if before else None) if f is not None]
    floor = max(floors) if floors else None
    ceiling = snapshot.ceiling if snapshot.ceiling is None or floor is None else max(snapshot.ceiling, floor)
    old = (before["plan"], before["status"]) if before else (FREE, "none")
    changed = (before is None or old != (plan, status) or before["cancel_at_period_end"] != cancel_at_period_end)
    args: tuple[Any, ...] = (
        sub["id"], uuid.UUID(user_id), plan, status, price["id"], price["currency"], price["unit_amount"],
        price["recurring"]["interval"], _ts(item["current_period_start"]), _ts(item["current_period_end"]),
        cancel_at_period_end, past_due_since, _ts(sub["start_date"]), _ts(_get(sub, "ended_at")), floor, ceiling)
    if changed:  # the change and its outbox event in one statement
        await conn.execute(_STORE_AND_ANNOUNCE, *args, *outbox.insert_args(outbox.build(
            "billing.subscription_changed", user_id, user_id=user_id, subscription=sub["id"], plan=plan,
            status=status, previous_plan=old[0], previous_status=old[1], cancel_at_period_end=cancel_at_period_end)))
    else:
        await conn.execute(_STORE, *args)
    return _granted(*old), _granted(plan, status)


# --------------------------------------------------------------------------- use cases

async def _customer_for(pool: asyncpg.Pool, client: stripe.StripeClient, who: Principal,
                        test_clock: str | None) -> str:
    existing = await pool.fetchval("SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1", who.user_id)
    if existing:
        return existing
    email = await pool.fetchval("SELECT email FROM users WHERE id = $1", who.user_id)
    params: dict[str, Any] = {"email": email, "metadata": {"user_id": str(who.user_id)}}
    if test_clock:
        params["test_clock"] = test_clock
    customer = await client.v1.customers.create_async(params=params,
                                                      options={"idempotency_key": _key("vf-customer", who.user_id)})
    await pool.execute("INSERT INTO billing_customers (user_id, stripe_customer_id) VALUES ($1, $2)"
                       " ON CONFLICT (user_id) DO NOTHING", who.user_id, customer.id)
    return await pool.fetchval("SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1", who.user_id)


async def subscribe(pool: asyncpg.Pool, settings: Settings, who: Principal, *, plan: str,
                    payment_method: str | None = None, test_clock: str | None = None) -> dict[str, Any]:
    """Subscribe ``who`` to ``plan``, paying the first invoice now; the same request again is a no-op."""
    if plan not in PAID_PLANS:
        raise InvalidInput(f"plan must be one of {', '.join(PAID_PLANS)}")
    client = stripe_client(settings)
    with calling_stripe():
        prices = await ensure_catalog(pool, client, settings)
        live = await _live_row(pool, who.user_id)
        if live is not None and live["status"] != "incomplete":
            if live["plan"] == plan:
                return await subscription_view(pool, settings, who)
            raise Conflict(f"already subscribed to {live['plan']}: change the plan instead",
                           subscription=live["stripe_subscription_id"])
        customer_id = await _customer_for(pool, client, who, test_clock)
        method_id = None
        if payment_method:
            attached = await client.v1.payment_methods.attach_async(
                payment_method, params={"customer": customer_id},
                options={"idempotency_key": _key("vf-attach", who.user_id, payment_method)})
            method_id = attached.id
            await client.v1.customers.update_async(
                customer_id, params={"invoice_settings": {"default_payment_method": method_id}},
                options={"idempotency_key": _key("vf-default-method", who.user_id, method_id)})
        generation = await pool.fetchval("SELECT count(*) FROM billing_subscriptions WHERE user_id = $1 AND"
                                         " status <> ALL($2::text[])", who.user_id, list(LIVE_STATUSES))
        sub = await client.v1.subscriptions.create_async(
            params={"customer": customer_id, "items": [{"price": prices[plan].price_id}],
                    "payment_behavior": "error_if_incomplete", "metadata": {"user_id": str(who.user_id)}},
            options={"idempotency_key": _key("vf-subscribe", who.user_id, generation, method_id or "default")})
        async with transaction(pool) as conn:
            await apply_subscription(conn, client, sub.id, margin_s=settings.billing_stripe_clock_margin_s)
    return await subscription_view(pool, settings, who)


def plan_offers(settings: Settings) -> dict[str, Any]:
    """What a subscription page offers: each paid plan's monthly price and seats, and whether payments are
    in Stripe's test mode (the local server or an ``sk_test_`` key), where test cards such as
    ``pm_card_visa`` may stand in for Stripe.js's Payment Element, and the publishable key that Payment
    Element needs (none: the page offers test cards only)."""
    key = settings.stripe_secret_key.get_secret_value() if settings.stripe_secret_key else ""
    seats = {entitlements.PREMIUM: 1, entitlements.FAMILY: settings.family_members_max}
    return {
        "plans": [{"plan": plan, "amount": amount, "currency": settings.billing_currency, "interval": "month",
                   "seats": seats[plan]} for plan, amount in plan_amounts(settings).items()],
        "test_mode": not key.startswith("sk_live_"),
        "publishable_key": settings.stripe_publishable_key,
    }


async def setup_intent(pool: asyncpg.Pool, settings: Settings, who: Principal) -> str:
    """A SetupIntent for the caller's Stripe customer; its ``client_secret`` lets Stripe's Payment Element (in
    the browser) collect and save a card, whose payment method id ``subscribe`` then charges.

    Cards only: the page confirms without leaving it (``redirect: "if_required"``), which redirect-based
    methods would not allow. A new intent per request: each is a card form opened once, and one left
    unconfirmed costs nothing."""
    client = stripe_client(settings)
    with calling_stripe():
        customer_id = await _customer_for(pool, client, who, None)
        intent = await client.v1.setup_intents.create_async(params={
            "customer": customer_id, "usage": "off_session", "payment_method_types": ["card"],
            "metadata": {"user_id": str(who.user_id)}})
    return intent.client_secret


async def subscription_view(pool: asyncpg.Pool, settings: Settings, who: Principal) -> dict[str, Any]:
    """What ``GET /v1/me/subscription`` shows: plan granted now, Stripe status, period, the next invoice."""
    row = await pool.fetchrow("SELECT * FROM billing_subscriptions WHERE user_id = $1 ORDER BY started_at DESC"
                              " LIMIT 1", who.user_id)
    view: dict[str, Any] = {"plan": await plan_of(pool, settings, who.user_id), "subscription": None,
                            "next_invoice": None}
    if row is None:
        return view
    view["subscription"] = {
        "id": row["stripe_subscription_id"], "plan": row["plan"], "status": row["status"],
        "current_period_start": row["current_period_start"], "current_period_end": row["current_period_end"],
        "cancel_at_period_end": row["cancel_at_period_end"], "past_due_since": row["past_due_since"],
        "price": {"amount": row["unit_amount"], "currency": row["currency"], "interval": row["interval"]},
    }
    if row["status"] in LIVE_STATUSES and not row["cancel_at_period_end"]:
        try:
            preview = await stripe_client(settings).v1.invoices.create_preview_async(
                params={"subscription": row["stripe_subscription_id"]})
            view["next_invoice"] = {"amount_due": preview.amount_due, "currency": preview.currency,
                                    "date": _ts(preview.next_payment_attempt or preview.period_end)}
        except stripe.StripeError:
            view["next_invoice"] = None  # the view still answers when Stripe does not
    return view


async def _require_live(pool: asyncpg.Pool, who: Principal) -> asyncpg.Record:
    row = await _live_row(pool, who.user_id)
    if row is None:
        raise NotFound("no active subscription")
    return row


async def change_plan(pool: asyncpg.Pool, settings: Settings, who: Principal, *, plan: str) -> dict[str, Any]:
    """Move to another plan: an upgrade is prorated and charged now, a downgrade credits the next invoice."""
    if plan not in PAID_PLANS:
        raise InvalidInput(f"plan must be one of {', '.join(PAID_PLANS)}")
    row = await _require_live(pool, who)
    if row["plan"] == plan:
        return await subscription_view(pool, settings, who)
    client = stripe_client(settings)
    with calling_stripe():
        prices = await ensure_catalog(pool, client, settings)
        upgrade = prices[plan].unit_amount > row["unit_amount"]
        sub = await client.v1.subscriptions.retrieve_async(row["stripe_subscription_id"])
        await client.v1.subscriptions.update_async(
            row["stripe_subscription_id"],
            params={"items": [{"id": sub["items"].data[0].id, "price": prices[plan].price_id}],
                    "proration_behavior": "always_invoice" if upgrade else "create_prorations",
                    "payment_behavior": "error_if_incomplete"},
            options={"idempotency_key": _key("vf-change", row["stripe_subscription_id"], row["stripe_price_id"],
                                             prices[plan].price_id, row["updated_at"].timestamp())})
        async with transaction(pool) as conn:
            await apply_subscription(conn, client, row["stripe_subscription_id"],
                                         margin_s=settings.billing_stripe_clock_margin_s)
    return await subscription_view(pool, settings, who)


async def set_cancel_at_period_end(pool: asyncpg.Pool, settings: Settings, who: Principal,
                                   cancel: bool) -> dict[str, Any]:
    """Cancel at the end of the paid period (``cancel``), or resume a subscription set to cancel."""
    row = await _require_live(pool, who)
    if row["cancel_at_period_end"] != cancel:
        client = stripe_client(settings)
        with calling_stripe():
            await client.v1.subscriptions.update_async(
                row["stripe_subscription_id"], params={"cancel_at_period_end": cancel},
                options={"idempotency_key": _key("vf-cancel" if cancel else "vf-resume", row["stripe_subscription_id"],
                                                 row["updated_at"].timestamp())})
            async with transaction(pool) as conn:
                await apply_subscription(conn, client, row["stripe_subscription_id"],
                                         margin_s=settings.billing_stripe_clock_margin_s)
    return await subscription_view(pool, settings, who)


# --------------------------------------------------------------------------- webhooks

SUBSCRIPTION_EVENTS = ("customer.subscription.created", "customer.subscription.updated",
                       "customer.subscription.deleted")
INVOICE_EVENTS = ("invoice.paid", "invoice.payment_failed", "invoice.payment_action_required")


HANDLED_EVENTS = (*SUBSCRIPTION_EVENTS, *INVOICE_EVENTS, "charge.refunded")


@dataclass(frozen=True)
class WebhookEvent:
    """A verified event: its id, type, ``created`` (Unix seconds) and its object as Stripe showed it then."""

    id: str
    type: str
    created: int
    object_id: str
    object: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def verify(settings: Settings, payload: bytes, signature: str | None) -> WebhookEvent:
    """The event, if ``Stripe-Signature`` signs this exact body with our secret within the tolerance.

    The SDK checks the signature (``WebhookSignature.verify_header``, what ``Webhook.construct_event``
    does first); the body is then read as plain JSON, not built into StripeObjects: the handler reads
    a few fields of the event and of its object.
    """
    if settings.stripe_webhook_secret is None:
        raise BillingUnavailable("no webhook secret configured (VERSEFLOW_STRIPE_WEBHOOK_SECRET)")
    if not signature:
        raise MalformedRequest("missing Stripe-Signature header")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, settings.stripe_webhook_secret.get_secret_value(),
                                              tolerance=settings.stripe_webhook_tolerance_s)
    except stripe.SignatureVerificationError:
        raise MalformedRequest("invalid Stripe-Signature (wrong signature, or its timestamp is outside the "
                               "tolerance)") from None
    except UnicodeDecodeError:
        raise MalformedRequest("the body is not UTF-8") from None
    try:
        body = json.loads(text)
        obj = body["data"]["object"]
        return WebhookEvent(str(body["id"]), str(body["type"]), int(body["created"]), str(obj["id"]), obj)
    except (ValueError, KeyError, TypeError):
        raise MalformedRequest("the body is not a Stripe event") from None


WEBHOOKS = metrics.counter("verseflow_webhooks_total",
                           "Webhook deliveries by provider and outcome (applied, duplicate, ignored, rejected, "
                           "failed).", ("provider", "outcome"))
SUBSCRIPTION_APPLIES = metrics.counter(
    "verseflow_billing_subscription_applies_total",
    "Subscription states applied, by where the state came from: the event's own object (newer than the stored "
    "state), an API read (same second, unknown order, our own calls), or nothing (an older event).", ("source",))
WEBHOOK_LAG = metrics.histogram("verseflow_webhook_lag_seconds",
                                "From the provider creating an event to VerseFlow having handled it.",
                                ("provider",), buckets=metrics.SLOW_BUCKETS_S)


async def handle_webhook(pool: asyncpg.Pool, settings: Settings, payload: bytes, signature: str | None) -> str:
    """Verify, de-duplicate and apply one delivery; returns what happened (``applied``, ``duplicate``, ``ignored``).

    Event types VerseFlow does not act on are answered at once: recording them would change nothing.
    """
    try:
        event = verify(settings, payload, signature)
    except MalformedRequest:
        WEBHOOKS.inc(provider="stripe", outcome="rejected")
        raise
    try:
        result = await _handle_verified(pool, settings, event)
    except Exception:
        WEBHOOKS.inc(provider="stripe", outcome="failed")  # Stripe delivers it again later
        raise
    WEBHOOKS.inc(provider="stripe", outcome=result)
    WEBHOOK_LAG.observe(max(0.0, time.time() - event.created), provider="stripe")
    return result


async def _handle_verified(pool: asyncpg.Pool, settings: Settings, event: WebhookEvent) -> str:
    if event.type not in HANDLED_EVENTS:
        return "ignored"
    client = stripe_client(settings)
    with calling_stripe():  # Stripe unreachable: 503, nothing committed, Stripe delivers again later
        async with transaction(pool) as conn:
            result = await _apply_event(conn, settings, client, event)
            _crash_point(settings, "before_commit", event, result)
        _crash_point(settings, "after_commit", event, result)
    return result


def _crash_point(settings: Settings, step: str, event: WebhookEvent, result: str) -> None:
    """Fault injection for the crash tests: the process dies here, as a killed handler would."""
    if settings.billing_crash_at and result != "duplicate":
        where, _, event_type = settings.billing_crash_at.partition(":")
        if where == step and event_type in ("", event.type):
            log.warning("billing_crash_at: exiting", extra={"step": step, "event": event.id})
            os._exit(70)


# The event's id is recorded (``first``: not seen before) in the same round trip as what handling it needs
# first: the subscription's lock for a subscription event, the user of the invoice's customer for an
# invoice event (an invoice's customer never changes).
_RECORDED = """WITH recorded AS (INSERT INTO billing_webhook_events (stripe_event_id, type, created)
                                  VALUES ($1, $2, $3) ON CONFLICT (stripe_event_id) DO NOTHING RETURNING true)
               SELECT EXISTS (SELECT FROM recorded) AS first"""
_RECORD = {
    "subscription": _RECORDED + f", {_LOCK_SQL.format('$4')} IS NULL AS locked",
    "invoice": _RECORDED + ", (SELECT user_id FROM billing_customers WHERE stripe_customer_id = $4) AS customer_user",
    "other": _RECORDED + ", $4::text AS unused",
}


async def _apply_event(conn: asyncpg.Connection, settings: Settings, client: stripe.StripeClient,
                       event: WebhookEvent) -> str:
    kind = "subscription" if event.type in SUBSCRIPTION_EVENTS else "invoice" if event.type in INVOICE_EVENTS \
        else "other"
    argument = {"subscription": event.object_id, "invoice": _get(event.object, "customer")}.get(kind)
    recorded = await conn.fetchrow(_RECORD[kind], event.id, event.type, _ts(event.created), argument)
    if not recorded["first"]:
        return "duplicate"
    if kind == "subscription":
        applied = await apply_subscription(conn, client, event.object_id, event=event, locked=True,
                                           margin_s=settings.billing_stripe_clock_margin_s,
                                           use_event_object=not settings.billing_webhook_refetch)
        return "applied" if applied is not None else "ignored"
    if kind == "invoice":
        return await _invoice_event(conn, client, event, recorded["customer_user"],
                                    refetch=settings.billing_webhook_refetch)
    return await _refunds(conn, client, event.object_id)


def _subscription_of_invoice(invoice: Any) -> str | None:
    return _get(_get(_get(invoice, "parent"), "subscription_details"), "subscription")


async def _invoice_event(conn: asyncpg.Connection, client: stripe.StripeClient, event: WebhookEvent,
                         customer_user: uuid.UUID | None, *, refetch: bool) -> str:
    """Book a paid invoice, or record a failed payment. The subscription's own state arrives by
    ``customer.subscription.updated``, which Stripe sends whenever its status changes.

    The event's own invoice is enough, whatever the order of delivery: an ``invoice.paid`` event's
    invoice is paid, and a paid invoice never changes again (its lines and amounts are fixed when it is
    finalized); a failed payment only needs the invoice's id and customer. Only Stripe's fee is read
    from the API: the invoice's payments are not in an event's object (``payments`` is includable), so
    they are listed, and each payment intent is read with its charge's balance transaction.
    ``refetch`` re-reads the invoice itself instead (as before issue 9's throughput work).
    """
    invoice = await _read(client, _path("invoices", event.object_id), expand=["payments"]) if refetch else event.object
    sub_id = _subscription_of_invoice(invoice)
    if event.type != "invoice.paid":
        await emit(conn, "billing.payment_failed", customer_user, user_id=customer_user, invoice=invoice["id"],
                   action_required=event.type == "invoice.payment_action_required")
        return "applied"
    if invoice["status"] != "paid":
        return "ignored"
    if refetch:
        payments = invoice["payments"]["data"]
    else:
        payments = await _read_all(client, _path("invoice_payments"), invoice=invoice["id"], status="paid",
                                   limit=100)
    fee = 0
    for payment in payments:
        intent_id = _get(payment["payment"], "payment_intent")
        if payment["status"] == "paid" and intent_id:
            intent = await _read(client, _path("payment_intents", intent_id),
                                 expand=["latest_charge.balance_transaction"])
            fee += intent["latest_charge"]["balance_transaction"]["fee"]
    by_plan: dict[str, int] = {}
    lines = invoice["lines"]["data"]
    if invoice["lines"]["has_more"]:
        lines = await _read_all(client, _path("invoices", invoice["id"], "lines"), limit=100)
    for line in lines:
        price = _get(_get(_get(line, "pricing"), "price_details"), "price")
        plan = await _plan_of_price(conn, client, price) if price else "other"
        by_plan[plan] = by_plan.get(plan, 0) + line["amount"]
    paid_at = _get(invoice["status_transitions"], "paid_at")
    entry = ledger.invoice_payment(source_key=f"stripe:invoice.paid:{invoice['id']}", currency=invoice["currency"],
                                   amount_paid=invoice["amount_paid"], fee=fee, revenue_by_plan=by_plan,
                                   occurred_at=_ts(paid_at) or datetime.now(UTC),
                                   metadata={"invoice": invoice["id"], "subscription": sub_id,
                                             "customer": invoice["customer"]})
    if entry is not None:
        await ledger.post(conn, entry, announce=outbox.build(
            "billing.invoice_paid", customer_user, user_id=customer_user, invoice=invoice["id"],
            amount_paid=invoice["amount_paid"], currency=invoice["currency"]))
    return "applied"


async def _refunds(conn: asyncpg.Connection, client: stripe.StripeClient, charge_id: str) -> str:
    """Book every refund of a charge not booked yet (Stripe does not embed refunds in charge events any more)."""
    refunds = await client.v1.refunds.list_async(params={"charge": charge_id, "limit": 100})
    for refund in refunds.data:
        if refund.status not in ("succeeded", "pending"):
            continue
        entry = ledger.refund(source_key=f"stripe:refund:{refund.id}", currency=refund.currency,
                              amount=refund.amount, occurred_at=_ts(refund.created) or datetime.now(UTC),
                              metadata={"refund": refund.id, "charge": charge_id})
        if await ledger.post(conn, entry):
            await emit(conn, "billing.refunded", charge_id, refund=refund.id, charge=charge_id, amount=refund.amount,
                       currency=refund.currency)
    return "applied"


# --------------------------------------------------------------------------- pushing changes to sessions

Notify = Callable[[uuid.UUID, str, dict[str, Any]], Awaitable[object]]


def handlers(settings: Settings, notify: Notify) -> dict[str, list[Callable[[asyncpg.Connection, Event],
                                                                             Awaitable[None]]]]:
    """Event consumers: a plan change reaches the user's open sessions as a ``notify``.

    The stream grant needs no push (each grant asks ``plan_of``); the notify lets a player switch to
    the rungs it may now use without waiting for its next grant.
    """

    async def on_subscription_changed(conn: asyncpg.Connection, event: Event) -> None:
        user_id = uuid.UUID(event.payload["user_id"])
        plan = await plan_of(conn, settings, user_id)
        rungs = entitlements.PLAN_RUNGS.get(plan, entitlements.STANDARD_RUNGS)
        data = {"plan": plan, "status": event.payload["status"], "subscription": event.payload["subscription"],
                "cancel_at_period_end": event.payload["cancel_at_period_end"], "rungs": sorted(rungs)}
        await _notify(user_id, data)
        if FAMILY in (event.payload["plan"], event.payload.get("previous_plan")):
            # The family's members stream under this subscription: they hear of its change too.
            for member_id in await conn.fetch("SELECT member_id FROM family_members WHERE owner_id = $1", user_id):
                member_plan = await plan_of(conn, settings, member_id["member_id"])
                await _notify(member_id["member_id"], {
                    "plan": member_plan, "family": "owner_plan_changed",
                    "rungs": sorted(entitlements.PLAN_RUNGS.get(member_plan, entitlements.STANDARD_RUNGS))})

    async def _notify(user_id: uuid.UUID, data: dict[str, Any]) -> None:
        try:
            await notify(user_id, "subscription.changed", data)
        except Exception:  # noqa: BLE001 - best effort: a user with no session, or hosts restarting
            log.warning("could not notify a subscription change", extra={"user_id": str(user_id)})

    return {"billing.subscription_changed": [on_subscription_changed]}
