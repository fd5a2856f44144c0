"""The local Stripe server's state and billing rules: plain Python, no web framework.

Objects are stored as the JSON dicts Stripe returns (current API shapes, after the 2025 "basil"
changes: billing periods on subscription items, ``invoice.parent.subscription_details``,
``invoice.payments``, ``line_item.pricing``), plus private keys starting with ``_`` that are never
served (a test card's behaviour, a subscription's pending proration items, an invoice's retry plan).

Time: an object attached to a test clock (a customer created with ``test_clock``, and everything
of that customer) lives at the clock's ``frozen_time``; everything else at wall-clock time. Advancing
a clock runs, in time order, every renewal, payment retry and expiry that falls before the new time,
as Stripe's billing engine would, and emits the same events.
"""

from __future__ import annotations

import calendar
import copy
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

API_VERSION = "2026-10-28.endive"
_ALPHABET = string.ascii_letters + string.digits

# Stripe's test payment methods that VerseFlow's tests use (https://docs.stripe.com/testing).
# behaviour: "ok" charges succeed; "decline_on_attach" is refused when attached (Stripe verifies
# the card then); "attach_then_fail" attaches but every charge is declined (pm_card_chargeCustomerFail);
# "requires_action" needs 3-D Secure on every off-session charge.
TEST_CARDS: dict[str, dict[str, str]] = {
    "pm_card_visa": {"brand": "visa", "last4": "4242", "behavior": "ok"},
    "pm_card_mastercard": {"brand": "mastercard", "last4": "4444", "behavior": "ok"},
    "pm_card_chargeDeclined": {"brand": "visa", "last4": "0002", "behavior": "decline_on_attach",
                               "decline_code": "generic_decline"},
    "pm_card_chargeDeclinedInsufficientFunds": {"brand": "visa", "last4": "9995", "behavior": "decline_on_attach",
                                                "decline_code": "insufficient_funds"},
    "pm_card_chargeCustomerFail": {"brand": "visa", "last4": "0341", "behavior": "attach_then_fail",
                                   "decline_code": "generic_decline"},
    "pm_card_authenticationRequired": {"brand": "visa", "last4": "3184", "behavior": "requires_action"},
}

PREFIXES = {
    "customer": "cus", "payment_method": "pm", "product": "prod", "price": "price", "subscription": "sub",
    "subscription_item": "si", "invoice": "in", "line_item": "il", "invoiceitem": "ii", "payment_intent": "pi",
    "charge": "ch", "refund": "re", "balance_transaction": "txn", "event": "evt", "invoice_payment": "inpay",
    "test_helpers.test_clock": "clock", "webhook_endpoint": "we", "setup_intent": "seti",
}


class StripeApiError(Exception):
    """An error as Stripe reports it: HTTP status plus the ``error`` envelope's fields."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type, "message": message}
        if code:
            self.body["code"] = code
            self.body["doc_url"] = f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"
        if param:
            self.body["param"] = param
        self.body.update(extra)


def missing(kind: str, ident: str, param: str = "id") -> StripeApiError:
    return StripeApiError(404, f"No such {kind}: '{ident}'", code="resource_missing", param=param)


def new_id(prefix: str) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def add_months(ts: int, months: int, anchor_day: int | None = None) -> int:
    """``ts`` plus whole months, clamping the day (Jan 31 + 1 month = Feb 28/29) as Stripe does."""
    moment = datetime.fromtimestamp(ts, UTC)
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    day = min(anchor_day or moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def period_after(start: int, recurring: dict[str, Any], anchor_day: int) -> int:
    interval, count = recurring["interval"], int(recurring.get("interval_count") or 1)
    if interval == "month":
        return add_months(start, count, anchor_day)
    if interval == "year":
        return add_months(start, 12 * count, anchor_day)
    return start + count * {"day": 86400, "week": 7 * 86400}[interval]


def public(obj: Any) -> Any:
    """A deep copy without the private ``_`` keys: what the API serves."""
    if isinstance(obj, dict):
        return {k: public(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [public(v) for v in obj]
    return obj


def as_bool(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise StripeApiError(400, f"Invalid boolean: {value}", code="parameter_invalid_boolean", param=param)


def as_int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StripeApiError(400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=param) from None


def as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value[k] for k in sorted(value, key=lambda k: int(k) if k.isdigit() else 0)]
    return [value]


def metadata_of(params: dict[str, Any], current: dict[str, str] | None = None) -> dict[str, str]:
    """Stripe's metadata update rules: keys merge, an empty value deletes, ``metadata=""`` clears."""
    value = params.get("metadata")
    result = dict(current or {})
    if value == "":
        return {}
    if isinstance(value, dict):
        for key, item in value.items():
            if item == "":
                result.pop(key, None)
            else:
                result[key] = str(item)
    return result


@dataclass
class Behaviour:
    """Knobs of the simulated billing engine (all have Stripe-like defaults)."""

    fee_percent: float = 2.9  # Stripe's standard US card pricing: 2.9 % + 30 cents per successful charge
    fee_fixed: int = 30
    retry_days: tuple[int, ...] = (3, 5, 7)  # Smart Retries' default schedule, simplified to fixed days
    after_final_failure: str = "canceled"  # or "unpaid": Stripe's "if all retries fail" setting
    incomplete_expiry_s: int = 23 * 3600


@dataclass
class Engine:
    """All objects, events and billing rules of one local Stripe account."""

    behaviour: Behaviour = field(default_factory=Behaviour)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    on_event: Callable[[dict[str, Any]], None] | None = None
    _request: dict[str, Any] = field(default_factory=lambda: {"id": None, "idempotency_key": None})
    # objects by kind: lists and the billing clock scan one kind, never every object and event
    _kinds: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _last_tick: int = 0

    # ----------------------------------------------------------------- plumbing
    def get(self, kind: str, ident: Any, param: str = "id") -> dict[str, Any]:
        obj = self.objects.get(ident) if isinstance(ident, str) else None
        if obj is None or obj["object"] != kind or obj.get("deleted"):
            raise missing(kind.split(".")[-1].replace("_", " "), str(ident), param)
        return obj

    def store(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["id"]] = obj
        self._kinds.setdefault(obj["object"], {})[obj["id"]] = obj
        return obj

    def forget(self, ident: str) -> None:
        obj = self.objects.pop(ident)
        self._kinds.get(obj["object"], {}).pop(ident, None)

    def reindex(self) -> None:
        """Rebuild the per-kind index after ``objects`` was filled from outside (a state file)."""
        self._kinds.clear()
        for obj in self.objects.values():
            self._kinds.setdefault(obj["object"], {})[obj["id"]] = obj

    def clock_time(self, clock_id: str | None) -> int:
        if clock_id and clock_id in self.objects:
            return int(self.objects[clock_id]["frozen_time"])
        return int(time.time())

    def now_for(self, obj: dict[str, Any]) -> int:
        return self.clock_time(obj.get("test_clock"))

    def emit(self, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"object": public(obj)}
        if previous is not None:
            data["previous_attributes"] = public(previous)
        event = {
            "id": new_id("evt"), "object": "event", "api_version": API_VERSION,
            "created": self.now_for(obj) if obj.get("object") != "test_helpers.test_clock" else obj["frozen_time"],
            "data": data, "livemode": False, "pending_webhooks": 0, "request": dict(self._request), "type": type_,
        }
        self.events.append(event)
        self.store(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def list_of(self, kind: str, where: Callable[[dict[str, Any]], bool] = lambda _: True) -> list[dict[str, Any]]:
        """Live objects of a kind, newest first (Stripe's list order)."""
        found = [o for o in self._kinds.get(kind, {}).values() if not o.get("deleted") and where(o)]
        return sorted(found, key=lambda o: (o.get("created", 0), o.get("_seq", 0)), reverse=True)

    def _seq(self) -> int:
        self.__dict__["_counter"] = self.__dict__.get("_counter", 0) + 1
        return self.__dict__["_counter"]

    # ----------------------------------------------------------------- test clocks
    def create_clock(self, params: dict[str, Any]) -> dict[str, Any]:
        frozen = as_int(params.get("frozen_time", int(time.time())), "frozen_time")
        clock = {"id": new_id("clock"), "object": "test_helpers.test_clock", "created": int(time.time()),
                 "deletes_after": int(time.time()) + 30 * 86400, "frozen_time": frozen, "livemode": False,
                 "name": params.get("name"), "status": "ready", "status_details": {}, "_seq": self._seq()}
        return self.store(clock)

    def advance_clock(self, clock_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Move a clock forward, running every billing step due on the way, in time order."""
        clock = self.get("test_helpers.test_clock", clock_id)
        target = as_int(params.get("frozen_time"), "frozen_time")
        if target <= clock["frozen_time"]:
            raise StripeApiError(400, "The frozen_time must be after the test clock's current frozen_time.",
                                 param="frozen_time")
        while True:
            due = self._next_due(clock_id, target)
            if due is None:
                break
            at, action = due
            clock["frozen_time"] = max(clock["frozen_time"], at)
            action()
        clock["frozen_time"] = target
        clock["status"] = "ready"
        self.emit("test_helpers.test_clock.ready", clock)
        return clock

    def tick(self) -> None:
        """Run what is due at wall-clock time for objects without a test clock (once a second at most:
        Stripe's times are whole seconds, and scanning every subscription on each request is not free)."""
        now = int(time.time())
        if now == self._last_tick:
            return
        self._last_tick = now
        while (due := self._next_due(None, now)) is not None:
            due[1]()

    def _next_due(self, clock_id: str | None, until: int) -> tuple[int, Callable[[], None]] | None:
        best: tuple[int, Callable[[], None]] | None = None

        def consider(at: int | None, action: Callable[[], None]) -> None:
            nonlocal best
            if at is not None and at <= until and (best is None or at < best[0]):
                best = (at, action)

        for sub in self.list_of("subscription", lambda s: s.get("test_clock") == clock_id):
            status = sub["status"]
            if status == "incomplete":
                consider(sub["created"] + self.behaviour.incomplete_expiry_s,
                         lambda s=sub: self._expire_incomplete(s))
            elif status in ("active", "trialing", "past_due", "unpaid"):
                end = sub["items"]["data"][0]["current_period_end"]
                if sub.get("cancel_at") and sub["cancel_at"] <= end:
                    consider(sub["cancel_at"], lambda s=sub: self._cancel(s, "cancellation_requested"))
                else:
                    consider(end, lambda s=sub: self._renew(s))
        for inv in self.list_of("invoice", lambda i: i.get("test_clock") == clock_id and i["status"] == "open"):
            consider(inv.get("next_payment_attempt"), lambda i=inv: self._retry(i))
        return best

    # ----------------------------------------------------------------- customers and payment methods
    def create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        clock = params.get("test_clock") or None
        if clock:
            self.get("test_helpers.test_clock", clock, "test_clock")
        cus = {
            "id": new_id("cus"), "object": "customer",
            "address": None, "balance": 0, "created": self.clock_time(clock), "currency": None,
            "default_source": None, "delinquent": False, "description": params.get("description"), "discount": None,
            "email": params.get("email"), "invoice_prefix": secrets.token_hex(4).upper(),
            "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                                 "rendering_options": None},
            "livemode": False, "metadata": metadata_of(params), "name": params.get("name"),
            "next_invoice_sequence": 1, "phone": params.get("phone"), "preferred_locales": [], "shipping": None,
            "tax_exempt": "none", "test_clock": clock, "customer_account": None, "_seq": self._seq(),
        }
        self.store(cus)
        if params.get("payment_method"):
            self.attach_payment_method(params["payment_method"], {"customer": cus["id"]}, emit=False)
        settings = params.get("invoice_settings") or {}
        if isinstance(settings, dict) and settings.get("default_payment_method"):
            pm = self._attached(settings["default_payment_method"], cus, "invoice_settings[default_payment_method]")
            cus["invoice_settings"]["default_payment_method"] = pm["id"]
        self.emit("customer.created", cus)
        return cus

    def update_customer(self, cus_id: str, params: dict[str, Any]) -> dict[str, Any]:
        cus = self.get("customer", cus_id)
        before = copy.deepcopy(cus)
        for key in ("email", "name", "description", "phone"):
            if key in params:
                cus[key] = params[key] or None
        if "metadata" in params:
            cus["metadata"] = metadata_of(params, cus["metadata"])
        settings = params.get("invoice_settings")
        if isinstance(settings, dict) and "default_payment_method" in settings:
            pm_id = settings["default_payment_method"]
            cus["invoice_settings"]["default_payment_method"] = (
                self._attached(pm_id, cus, "invoice_settings[default_payment_method]")["id"] if pm_id else None)
        self.emit("customer.updated", cus, _changed(before, cus))
        return cus

    def delete_customer(self, cus_id: str) -> dict[str, Any]:
        cus = self.get("customer", cus_id)
        for sub in self.list_of("subscription", lambda s: s["customer"] == cus_id and s["status"] != "canceled"):
            self._cancel(sub, "cancellation_requested")
        cus["deleted"] = True
        self.emit("customer.deleted", cus)
        return {"id": cus_id, "object": "customer", "deleted": True}

    def _attached(self, pm_id: str, cus: dict[str, Any], param: str) -> dict[str, Any]:
        pm = self.get("payment_method", pm_id, param)
        if pm["customer"] != cus["id"]:
            raise StripeApiError(400, f"The payment method `{pm_id}` must be attached to the customer to be used "
                                 "as the default.", param=param, code="resource_missing")
        return pm

    def create_payment_method(self, params: dict[str, Any]) -> dict[str, Any]:
        card = params.get("card") if isinstance(params.get("card"), dict) else {}
        token = card.get("token", "tok_visa")
        return self._new_payment_method("pm_card_" + token.removeprefix("tok_"), params)

    def _new_payment_method(self, token: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        spec = TEST_CARDS.get(token)
        if spec is None:
            raise missing("PaymentMethod", token)
        pm = {
            "id": new_id("pm"), "object": "payment_method", "allow_redisplay": "unspecified",
            "billing_details": {"address": None, "email": None, "name": None, "phone": None, "tax_id": None},
            "card": {"brand": spec["brand"], "checks": {"address_line1_check": None,
                                                        "address_postal_code_check": None, "cvc_check": "pass"},
                     "country": "US", "display_brand": spec["brand"], "exp_month": 12,
                     "exp_year": datetime.now(UTC).year + 3, "fingerprint": secrets.token_hex(8), "funding": "credit",
                     "generated_from": None, "last4": spec["last4"],
                     "networks": {"available": [spec["brand"]], "preferred": None},
                     "regulated_status": "unregulated", "three_d_secure_usage": {"supported": True}, "wallet": None},
            "created": int(time.time()), "customer": None, "customer_account": None, "livemode": False,
            "metadata": metadata_of(params or {}), "type": "card", "_spec": spec, "_seq": self._seq(),
        }
        return self.store(pm)

    def attach_payment_method(self, pm_id: str, params: dict[str, Any], *, emit: bool = True) -> dict[str, Any]:
        cus = self.get("customer", params.get("customer"), "customer")
        pm = self._new_payment_method(pm_id) if pm_id in TEST_CARDS else self.get("payment_method", pm_id)
        spec = pm["_spec"]
        if spec["behavior"] == "decline_on_attach":
            self.forget(pm["id"])
            raise _card_declined(spec, None)
        if pm["customer"] and pm["customer"] != cus["id"]:
            raise StripeApiError(400, "The payment method you provided has already been attached to a customer.",
                                 code="payment_method_unexpected_state")
        pm["customer"] = cus["id"]
        self.emit("payment_method.attached", pm)
        return pm

    def detach_payment_method(self, pm_id: str) -> dict[str, Any]:
        pm = self.get("payment_method", pm_id)
        if not pm["customer"]:
            raise StripeApiError(400, "The payment method you provided is not attached to a customer so detachment "
                                 "is impossible.", code="payment_method_unexpected_state")
        pm["customer"] = None
        self.emit("payment_method.detached", pm)
        return pm

    # ----------------------------------------------------------------- products and prices
    def create_product(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("name"):
            raise StripeApiError(400, "Missing required param: name.", code="parameter_missing", param="name")
        ident = params.get("id") or new_id("prod")
        if ident in self.objects:
            raise StripeApiError(400, "Product already exists.", code="resource_already_exists", param="id")
        now = int(time.time())
        prod = {"id": ident, "object": "product", "active": as_bool(params.get("active", True), "active"),
                "created": now, "default_price": None, "description": params.get("description"), "images": [],
                "livemode": False, "marketing_features": [], "metadata": metadata_of(params), "name": params["name"],
                "package_dimensions": None, "shippable": None, "statement_descriptor": None, "tax_code": None,
                "type": "service", "unit_label": None, "updated": now, "url": None, "_seq": self._seq()}
        self.store(prod)
        self.emit("product.created", prod)
        return prod

    def update_product(self, prod_id: str, params: dict[str, Any]) -> dict[str, Any]:
        prod = self.get("product", prod_id)
        before = copy.deepcopy(prod)
        for key in ("name", "description"):
            if key in params:
                prod[key] = params[key]
        if "active" in params:
            prod["active"] = as_bool(params["active"], "active")
        if "default_price" in params:
            prod["default_price"] = self.get("price", params["default_price"], "default_price")["id"]
        prod["metadata"] = metadata_of(params, prod["metadata"])
        prod["updated"] = int(time.time())
        self.emit("product.updated", prod, _changed(before, prod))
        return prod

    def create_price(self, params: dict[str, Any]) -> dict[str, Any]:
        if isinstance(params.get("product_data"), dict):
            product = self.create_product(params["product_data"])["id"]
        else:
            product = self.get("product", params.get("product"), "product")["id"]
        currency = str(params.get("currency") or "").lower()
        if not currency:
            raise StripeApiError(400, "Missing required param: currency.", code="parameter_missing", param="currency")
        amount = as_int(params.get("unit_amount"), "unit_amount")
        recurring = params.get("recurring")
        lookup_key = params.get("lookup_key") or None
        if lookup_key:
            holders = self.list_of("price", lambda p: p["lookup_key"] == lookup_key)
            if holders and not as_bool(params.get("transfer_lookup_key", False), "transfer_lookup_key"):
                raise StripeApiError(400, f"A price (`{holders[0]['id']}`) already uses that lookup key.",
                                     param="lookup_key")
            for holder in holders:
                holder["lookup_key"] = None
        price = {
            "id": new_id("price"), "object": "price", "active": True, "billing_scheme": "per_unit",
            "created": int(time.time()), "currency": currency, "custom_unit_amount": None, "livemode": False,
            "lookup_key": lookup_key, "metadata": metadata_of(params), "nickname": params.get("nickname"),
            "product": product, "recurring": None, "tax_behavior": "unspecified", "tiers_mode": None,
            "transform_quantity": None, "type": "one_time", "unit_amount": amount, "unit_amount_decimal": str(amount),
            "_seq": self._seq(),
        }
        if isinstance(recurring, dict):
            if recurring.get("interval") not in ("day", "week", "month", "year"):
                raise StripeApiError(400, "Invalid recurring[interval].", param="recurring[interval]")
            price["type"] = "recurring"
            price["recurring"] = {"interval": recurring["interval"],
                                  "interval_count": as_int(recurring.get("interval_count", 1), "interval_count"),
                                  "meter": None, "trial_period_days": None, "usage_type": "licensed"}
        self.store(price)
        self.emit("price.created", price)
        return price

    def update_price(self, price_id: str, params: dict[str, Any]) -> dict[str, Any]:
        price = self.get("price", price_id)
        before = copy.deepcopy(price)
        if "active" in params:
            price["active"] = as_bool(params["active"], "active")
        if "nickname" in params:
            price["nickname"] = params["nickname"] or None
        if "lookup_key" in params:
            price["lookup_key"] = params["lookup_key"] or None
        price["metadata"] = metadata_of(params, price["metadata"])
        self.emit("price.updated", price, _changed(before, price))
        return price

    # ----------------------------------------------------------------- payments
    def _fee(self, amount: int) -> int:
        return round(amount * self.behaviour.fee_percent / 100) + self.behaviour.fee_fixed

    def _payment_intent(self, *, amount: int, currency: str, customer: dict[str, Any] | None,
                        pm: dict[str, Any] | None, description: str | None, at: int,
                        metadata: dict[str, str] | None = None) -> dict[str, Any]:
        pi = {
            "id": new_id("pi"), "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_details": {"tip": {}}, "amount_received": 0, "application": None,
            "application_fee_amount": None, "automatic_payment_methods": None, "canceled_at": None,
            "cancellation_reason": None, "capture_method": "automatic", "client_secret": None,
            "confirmation_method": "automatic", "created": at, "currency": currency,
            "customer": customer["id"] if customer else None, "customer_account": None, "description": description,
            "excluded_payment_method_types": None, "last_payment_error": None, "latest_charge": None,
            "livemode": False, "metadata": metadata or {}, "next_action": None, "on_behalf_of": None,
            "payment_method": pm["id"] if pm else None, "payment_method_configuration_details": None,
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"], "processing": None, "receipt_email": None, "review": None,
            "setup_future_usage": None, "shipping": None, "source": None, "statement_descriptor": None,
            "statement_descriptor_suffix": None, "status": "requires_payment_method", "transfer_data": None,
            "transfer_group": None, "test_clock": customer.get("test_clock") if customer else None,
            "_seq": self._seq(),
        }
        pi["client_secret"] = f"{pi['id']}_secret_{secrets.token_urlsafe(18)}"
        self.store(pi)
        self.emit("payment_intent.created", pi)
        return pi

    def _confirm(self, pi: dict[str, Any]) -> bool:
        """Charge the intent's payment method; True if the money moved."""
        pm = self.objects.get(pi["payment_method"]) if pi["payment_method"] else None
        if pm is None:
            pi["status"] = "requires_payment_method"
            return False
        spec = pm["_spec"]
        at = pi["created"] if pi.get("test_clock") is None else self.clock_time(pi["test_clock"])
        if spec["behavior"] == "requires_action":
            pi["status"] = "requires_action"
            pi["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
            self.emit("payment_intent.requires_action", pi)
            return False
        ok = spec["behavior"] == "ok"
        charge = {
            "id": new_id("ch"), "object": "charge", "amount": pi["amount"],
            "amount_captured": pi["amount"] if ok else 0,
            "amount_refunded": 0, "application": None, "application_fee": None, "application_fee_amount": None,
            "balance_transaction": None, "billing_details": pm["billing_details"], "calculated_statement_descriptor":
            "VERSEFLOW", "captured": ok, "created": at, "currency": pi["currency"], "customer": pi["customer"],
            "description": pi["description"], "disputed": False, "failure_balance_transaction": None,
            "failure_code": None if ok else "card_declined",
            "failure_message": None if ok else "Your card was declined.", "fraud_details": {}, "livemode": False,
            "metadata": {}, "on_behalf_of": None,
            "outcome": {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                        "network_status": "approved_by_network" if ok else "declined_by_network",
                        "reason": None if ok else spec.get("decline_code"), "risk_level": "normal",
                        "seller_message": "Payment complete." if ok else "The bank did not return any further details "
                        "with this decline.", "type": "authorized" if ok else "issuer_declined"},
            "paid": ok, "payment_intent": pi["id"], "payment_method": pm["id"],
            "payment_method_details": {"card": {"brand": spec["brand"], "last4": spec["last4"], "country": "US",
                                                "exp_month": pm["card"]["exp_month"],
                                                "exp_year": pm["card"]["exp_year"], "funding": "credit",
                                                "network": spec["brand"]}, "type": "card"},
            "receipt_email": None, "receipt_number": None, "receipt_url": None, "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "url": ""}, "review": None,
            "shipping": None, "source_transfer": None, "statement_descriptor": None,
            "statement_descriptor_suffix": None, "status": "succeeded" if ok else "failed", "transfer_data": None,
            "transfer_group": None, "test_clock": pi.get("test_clock"), "_seq": self._seq(),
        }
        charge["refunds"]["url"] = f"/v1/charges/{charge['id']}/refunds"
        self.store(charge)
        pi["latest_charge"] = charge["id"]
        if ok:
            fee = self._fee(pi["amount"])
            txn = self.store({
                "id": new_id("txn"), "object": "balance_transaction", "amount": pi["amount"],
                "available_on": at + 2 * 86400,
                "balance_type": "payments", "created": at, "currency": pi["currency"], "description": pi["description"],
                "exchange_rate": None, "fee": fee,
                "fee_details": [{"amount": fee, "application": None, "currency": pi["currency"],
                                 "description": "Stripe processing fees", "type": "stripe_fee"}],
                "net": pi["amount"] - fee, "reporting_category": "charge", "source": charge["id"],
                "status": "pending", "type": "charge", "_seq": self._seq()})
            charge["balance_transaction"] = txn["id"]
            pi["status"] = "succeeded"
            pi["amount_received"] = pi["amount"]
            pi["last_payment_error"] = None
            self.emit("charge.succeeded", charge)
            self.emit("payment_intent.succeeded", pi)
            return True
        pi["status"] = "requires_payment_method"
        pi["last_payment_error"] = {"type": "card_error", "code": "card_declined",
                                    "decline_code": spec.get("decline_code"), "message": "Your card was declined.",
                                    "charge": charge["id"], "payment_method": public(pm)}
        self.emit("charge.failed", charge)
        self.emit("payment_intent.payment_failed", pi)
        return False

    def create_payment_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        amount = as_int(params.get("amount"), "amount")
        if amount < 50:
            raise StripeApiError(400, "Amount must be at least $0.50 usd", code="amount_too_small", param="amount")
        customer = self.get("customer", params["customer"], "customer") if params.get("customer") else None
        pm = None
        if params.get("payment_method"):
            pm_id = params["payment_method"]
            pm = self._new_payment_method(pm_id) if pm_id in TEST_CARDS else self.get("payment_method", pm_id,
                                                                                       "payment_method")
        at = self.now_for(customer) if customer else int(time.time())
        pi = self._payment_intent(amount=amount, currency=str(params.get("currency", "usd")).lower(),
                                  customer=customer, pm=pm, description=params.get("description"), at=at,
                                  metadata=metadata_of(params))
        if pm is not None and as_bool(params.get("confirm", False), "confirm"):
            self.confirm_payment_intent(pi["id"], {})
        elif pm is not None:
            pi["status"] = "requires_confirmation"
        return pi

    def _unconfirmed(self, kind: str, name: str, ident: str) -> dict[str, Any]:
        """A payment or setup intent that may still be confirmed (Stripe refuses a succeeded one)."""
        intent = self.get(kind, ident)
        if intent["status"] == "succeeded":
            raise StripeApiError(400, f"This {name}'s status is succeeded, so it cannot be confirmed.",
                                 code=f"{kind}_unexpected_state")
        return intent

    def confirm_payment_intent(self, pi_id: str, params: dict[str, Any]) -> dict[str, Any]:
        pi = self._unconfirmed("payment_intent", "PaymentIntent", pi_id)
        if params.get("payment_method"):
            pm_id = params["payment_method"]
            pi["payment_method"] = (self._new_payment_method(pm_id) if pm_id in TEST_CARDS
                                    else self.get("payment_method", pm_id, "payment_method"))["id"]
        if not self._confirm(pi) and pi["status"] != "requires_action":
            pm = self.objects.get(pi["payment_method"] or "")
            raise _card_declined(pm["_spec"] if pm else {}, pi)
        return pi

    # ----------------------------------------------------------------- setup intents
    def create_setup_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        """A SetupIntent: what Stripe.js's Payment Element collects a card against (``client_secret``) to save it
        for later charges; confirming it (Stripe.js does, in the browser) attaches the card to the customer."""
        customer = self.get("customer", params["customer"], "customer") if params.get("customer") else None
        usage = params.get("usage", "off_session")
        if usage not in ("off_session", "on_session"):
            raise StripeApiError(400, f"Invalid usage: {usage}", code="parameter_invalid_string", param="usage")
        seti = {
            "id": new_id("seti"), "object": "setup_intent", "application": None,
            "automatic_payment_methods": ({"allow_redirects": "always", "enabled": True}
                                          if isinstance(params.get("automatic_payment_methods"), dict) else None),
            "cancellation_reason": None, "client_secret": None, "created": int(time.time()),
            "customer": customer["id"] if customer else None, "description": params.get("description"),
            "last_setup_error": None, "latest_attempt": None, "livemode": False, "mandate": None,
            "metadata": metadata_of(params), "next_action": None, "on_behalf_of": None, "payment_method": None,
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": as_list(params.get("payment_method_types")) or ["card"],
            "single_use_mandate": None, "status": "requires_payment_method", "usage": usage, "_seq": self._seq(),
        }
        seti["client_secret"] = f"{seti['id']}_secret_{secrets.token_urlsafe(18)}"
        self.store(seti)
        self.emit("setup_intent.created", seti)
        return seti

    def confirm_setup_intent(self, seti_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Attach ``payment_method`` to the intent's customer; a card declined on attach leaves the intent waiting."""
        seti = self._unconfirmed("setup_intent", "SetupIntent", seti_id)
        if not params.get("payment_method"):
            raise StripeApiError(400, "You must provide a payment method to confirm this SetupIntent.",
                                 code="parameter_missing", param="payment_method")
        try:
            pm = (self.attach_payment_method(params["payment_method"], {"customer": seti["customer"]})
                  if seti["customer"] else self.get("payment_method", params["payment_method"], "payment_method"))
        except StripeApiError as error:
            seti["last_setup_error"] = {k: v for k, v in error.body.items() if k in ("type", "code", "message")}
            self.emit("setup_intent.setup_failed", seti)
            raise
        seti.update(payment_method=pm["id"], status="succeeded", last_setup_error=None)
        self.emit("setup_intent.succeeded", seti)
        return seti

    def create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("payment_intent"):
            pi = self.get("payment_intent", params["payment_intent"], "payment_intent")
            charge_id = pi["latest_charge"]
        else:
            charge_id = params.get("charge")
        charge = self.get("charge", charge_id, "charge")
        if not charge["paid"]:
            raise StripeApiError(400, f"Charge {charge['id']} has not been captured.", code="charge_not_captured")
        left = charge["amount"] - charge["amount_refunded"]
        amount = as_int(params.get("amount", left), "amount")
        if amount <= 0 or amount > left:
            code = "charge_already_refunded" if left == 0 else "amount_too_large"
            raise StripeApiError(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                                 code=code, param="amount")
        at = self.clock_time(charge.get("test_clock"))
        txn = self.store({
            "id": new_id("txn"), "object": "balance_transaction", "amount": -amount, "available_on": at,
            "balance_type": "payments", "created": at, "currency": charge["currency"], "description": "REFUND",
            "exchange_rate": None, "fee": 0, "fee_details": [], "net": -amount, "reporting_category": "refund",
            "source": None, "status": "available", "type": "refund", "_seq": self._seq()})
        refund = {"id": new_id("re"), "object": "refund", "amount": amount, "balance_transaction": txn["id"],
                  "charge": charge["id"], "created": at, "currency": charge["currency"], "customer": charge["customer"],
                  "customer_account": None,
                  "destination_details": {"card": {"type": "refund", "reference_status": "pending"}, "type": "card"},
                  "metadata": metadata_of(params), "payment_intent": charge["payment_intent"],
                  "payment_method": charge["payment_method"], "reason": params.get("reason"), "receipt_number": None,
                  "source_transfer_reversal": None, "status": "succeeded", "transfer_reversal": None,
                  "test_clock": charge.get("test_clock"), "_seq": self._seq()}
        txn["source"] = refund["id"]
        self.store(refund)
        before = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        charge["refunds"]["data"].insert(0, public(refund))
        self.emit("refund.created", refund)
        self.emit("charge.refunded", charge, before)
        return refund

    # ----------------------------------------------------------------- subscriptions
    def _item(self, sub: dict[str, Any], price: dict[str, Any], quantity: int, start: int, end: int) -> dict[str, Any]:
        item = {"id": new_id("si"), "object": "subscription_item", "billing_thresholds": None, "created": start,
                "current_period_end": end, "current_period_start": start, "discounts": [], "metadata": {},
                "plan": None, "price": public(price), "quantity": quantity, "subscription": sub["id"],
                "tax_rates": []}
        return item

    def create_subscription(self, params: dict[str, Any]) -> dict[str, Any]:
        cus = self.get("customer", params.get("customer"), "customer")
        items = as_list(params.get("items"))
        if not items:
            raise StripeApiError(400, "Missing required param: items.", code="parameter_missing", param="items")
        behaviour = params.get("payment_behavior", "allow_incomplete")
        pm_id = params.get("default_payment_method") or cus["invoice_settings"]["default_payment_method"]
        pm = self._attached(pm_id, cus, "default_payment_method") if params.get("default_payment_method") else (
            self.objects.get(pm_id) if pm_id else None)
        prices = []
        for index, spec in enumerate(items):
            price = self.get("price", spec.get("price"), f"items[{index}][price]")
            if price["type"] != "recurring":
                raise StripeApiError(400, "The price specified is set to `type=one_time` but this field only "
                                     "accepts prices with `type=recurring`.", param=f"items[{index}][price]")
            prices.append((price, as_int(spec.get("quantity", 1), f"items[{index}][quantity]")))
        trial_days = as_int(params.get("trial_period_days", 0), "trial_period_days")
        total = sum(p["unit_amount"] * q for p, q in prices)
        if (behaviour == "error_if_incomplete" and not trial_days and total > 0
                and (pm is None or pm["_spec"]["behavior"] != "ok")):
            raise _card_declined(pm["_spec"] if pm else {}, None)  # nothing is created, as Stripe does
        now = self.now_for(cus)
        anchor_day = datetime.fromtimestamp(now, UTC).day
        sub: dict[str, Any] = {
            "id": new_id("sub"), "object": "subscription", "application": None, "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": now, "billing_cycle_anchor_config": None, "billing_mode": {"type": "classic"},
            "billing_thresholds": None, "cancel_at": None, "cancel_at_period_end": False, "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically", "created": now, "currency": prices[0][0]["currency"],
            "customer": cus["id"], "customer_account": None, "days_until_due": None,
            "default_payment_method": pm["id"] if params.get("default_payment_method") else None,
            "default_source": None, "default_tax_rates": [], "description": params.get("description"),
            "discounts": [], "ended_at": None, "invoice_settings": {"account_tax_ids": None,
                                                                    "issuer": {"type": "self"}},
            "items": {"object": "list", "data": [], "has_more": False, "url": ""}, "latest_invoice": None,
            "livemode": False, "metadata": metadata_of(params), "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None, "pause_collection": None,
            "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                                 "save_default_payment_method": "off"},
            "pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None,
            "schedule": None, "start_date": now, "status": "incomplete", "test_clock": cus["test_clock"],
            "transfer_data": None, "trial_end": None, "trial_settings": {"end_behavior":
                                                                         {"missing_payment_method": "create_invoice"}},
            "trial_start": None, "_anchor_day": anchor_day, "_pending": [], "_seq": self._seq(),
        }
        sub["items"]["url"] = f"/v1/subscription_items?subscription={sub['id']}"
        end = now + trial_days * 86400 if trial_days else period_after(now, prices[0][0]["recurring"], anchor_day)
        sub["items"]["data"] = [self._item(sub, p, q, now, end) for p, q in prices]
        if trial_days:
            sub.update(status="trialing", trial_start=now, trial_end=end, billing_cycle_anchor=end,
                       _anchor_day=datetime.fromtimestamp(end, UTC).day)
        if as_bool(params.get("cancel_at_period_end", False), "cancel_at_period_end"):
            sub.update(cancel_at_period_end=True, cancel_at=end)
        self.store(sub)
        lines = [self._period_line(sub, item, amount=0 if trial_days else None) for item in sub["items"]["data"]]
        invoice = self._invoice(cus, sub, lines, "subscription_create", now, now)
        if not trial_days and behaviour != "default_incomplete":
            paid = self._attempt(invoice, sub)
            if paid:
                sub["status"] = "active"
        self.emit("customer.subscription.created", sub)
        return sub

    def _period_line(self, sub: dict[str, Any], item: dict[str, Any], amount: int | None = None) -> dict[str, Any]:
        price = item["price"]
        amount = price["unit_amount"] * item["quantity"] if amount is None else amount
        product = self.objects.get(price["product"], {}).get("name", price["product"])
        money = f"{price['unit_amount'] / 100:.2f}"
        return self._line(sub, item, amount, f"{item['quantity']} × {product} (at ${money} / "
                          f"{price['recurring']['interval']})", item["current_period_start"],
                          item["current_period_end"], proration=False)

    def _line(self, sub: dict[str, Any], item: dict[str, Any], amount: int, description: str, start: int, end: int,
              *, proration: bool, invoice_item: str | None = None) -> dict[str, Any]:
        price = item["price"]
        parent: dict[str, Any]
        if invoice_item:
            parent = {"type": "invoice_item_details", "subscription_item_details": None,
                      "invoice_item_details": {"invoice_item": invoice_item, "proration": proration,
                                               "proration_details": {"credited_items": None},
                                               "subscription": sub["id"]}}
        else:
            parent = {"type": "subscription_item_details", "invoice_item_details": None,
                      "subscription_item_details": {"invoice_item": None, "proration": proration,
                                                    "proration_details": {"credited_items": None},
                                                    "subscription": sub["id"], "subscription_item": item["id"]}}
        return {"id": new_id("il"), "object": "line_item", "amount": amount, "currency": price["currency"],
                "description": description, "discount_amounts": [], "discountable": not proration, "discounts": [],
                "invoice": None, "livemode": False, "metadata": {}, "parent": parent,
                "period": {"end": end, "start": start}, "pretax_credit_amounts": [],
                "pricing": {"type": "price_details", "price_details": {"price": price["id"],
                                                                       "product": price["product"]},
                            "unit_amount_decimal": str(price["unit_amount"])},
                "quantity": item["quantity"], "subtotal": amount, "taxes": []}

    def _invoice(self, cus: dict[str, Any], sub: dict[str, Any] | None, lines: list[dict[str, Any]], reason: str,
                 start: int, end: int) -> dict[str, Any]:
        now = self.now_for(cus)
        total = sum(line["amount"] for line in lines)
        starting = min(cus["balance"], 0) if total > 0 else cus["balance"]
        due = max(0, total + starting)
        cus["balance"] = min(0, total + starting) if total > 0 else total + starting
        number = f"{cus['invoice_prefix']}-{cus['next_invoice_sequence']:04d}"
        cus["next_invoice_sequence"] += 1
        inv = {
            "id": new_id("in"), "object": "invoice", "account_country": "US", "account_name": "VerseFlow (local)",
            "account_tax_ids": None, "amount_due": due, "amount_overpaid": 0, "amount_paid": 0,
            "amount_remaining": due, "amount_shipping": 0, "application": None, "attempt_count": 0,
            "attempted": False, "auto_advance": True, "automatic_tax": {"disabled_reason": None, "enabled": False,
                                                                        "liability": None, "provider": None,
                                                                        "status": None},
            "automatically_finalizes_at": None, "billing_reason": reason,
            "collection_method": "charge_automatically", "created": now, "currency": lines[0]["currency"],
            "custom_fields": None, "customer": cus["id"], "customer_account": None, "customer_address": None,
            "customer_email": cus["email"], "customer_name": cus["name"], "customer_phone": None,
            "customer_shipping": None, "customer_tax_exempt": "none", "customer_tax_ids": [],
            "default_payment_method": None, "default_source": None, "default_tax_rates": [], "description": None,
            "discounts": [], "due_date": None, "effective_at": now, "ending_balance": cus["balance"], "footer": None,
            "from_invoice": None, "hosted_invoice_url": None, "invoice_pdf": None, "issuer": {"type": "self"},
            "last_finalization_error": None, "latest_revision": None,
            "lines": {"object": "list", "data": lines, "has_more": False, "url": ""}, "livemode": False,
            "metadata": {}, "next_payment_attempt": None, "number": number, "on_behalf_of": None,
            "parent": None, "payment_settings": {"default_mandate": None, "payment_method_options": None,
                                                 "payment_method_types": None},
            "payments": {"object": "list", "data": [], "has_more": False, "url": ""},
            "period_end": end, "period_start": start, "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0, "receipt_number": None, "rendering": None,
            "shipping_cost": None, "shipping_details": None, "starting_balance": starting,
            "statement_descriptor": None, "status": "open",
            "status_transitions": {"finalized_at": now, "marked_uncollectible_at": None, "paid_at": None,
                                   "voided_at": None},
            "subtotal": total, "subtotal_excluding_tax": total, "test_clock": cus["test_clock"], "total": total,
            "total_discount_amounts": [], "total_excluding_tax": total, "total_pretax_credit_amounts": [],
            "total_taxes": [], "webhooks_delivered_at": now, "_retries": 0, "_seq": self._seq(),
        }
        inv["lines"]["url"] = f"/v1/invoices/{inv['id']}/lines"
        inv["payments"]["url"] = f"/v1/invoices/{inv['id']}/payments"
        for line in lines:
            line["invoice"] = inv["id"]
        if sub is not None:
            inv["parent"] = {"type": "subscription_details", "quote_details": None,
                             "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"]}}
            sub["latest_invoice"] = inv["id"]
        self.store(inv)
        self.emit("invoice.created", inv)
        self.emit("invoice.finalized", inv)
        if due == 0:
            self._mark_paid(inv, now)
        return inv

    def _mark_paid(self, inv: dict[str, Any], at: int) -> None:
        inv.update(status="paid", amount_paid=inv["amount_due"], amount_remaining=0, next_payment_attempt=None)
        inv["status_transitions"]["paid_at"] = at
        self.emit("invoice.paid", inv)
        self.emit("invoice.payment_succeeded", inv)

    def _payment_method_for(self, inv: dict[str, Any], sub: dict[str, Any] | None) -> dict[str, Any] | None:
        cus = self.objects[inv["customer"]]
        pm_id = (sub or {}).get("default_payment_method") or cus["invoice_settings"]["default_payment_method"]
        return self.objects.get(pm_id) if pm_id else None

    def _attempt(self, inv: dict[str, Any], sub: dict[str, Any] | None, pm: dict[str, Any] | None = None) -> bool:
        """One payment attempt on an open invoice; emits what Stripe emits for the outcome."""
        if inv["status"] == "paid":
            return True
        cus = self.objects[inv["customer"]]
        pm = pm or self._payment_method_for(inv, sub)
        now = self.now_for(cus)
        pi = self._payment_intent(amount=inv["amount_remaining"], currency=inv["currency"], customer=cus, pm=pm,
                                  description="Subscription creation" if inv["billing_reason"] == "subscription_create"
                                  else "Subscription update", at=now)
        payment = {"id": new_id("inpay"), "object": "invoice_payment", "amount_paid": None,
                   "amount_requested": inv["amount_remaining"], "created": now, "currency": inv["currency"],
                   "invoice": inv["id"], "is_default": True, "livemode": False,
                   "payment": {"type": "payment_intent", "payment_intent": pi["id"]}, "status": "open",
                   "status_transitions": {"canceled_at": None, "paid_at": None}}
        for old in inv["payments"]["data"]:
            old["is_default"] = False
        inv["payments"]["data"].insert(0, payment)
        self.store(dict(payment))
        inv["attempt_count"] += 1
        inv["attempted"] = True
        ok = self._confirm(pi)
        if ok:
            payment.update(amount_paid=pi["amount"], status="paid")
            payment["status_transitions"]["paid_at"] = now
            self.objects[payment["id"]].update(public(payment))
            self._mark_paid(inv, now)
            return True
        payment["status"] = "canceled" if pi["status"] != "requires_action" else "open"
        self.objects[payment["id"]].update(public(payment))
        if inv["billing_reason"] != "subscription_create" and inv["_retries"] < len(self.behaviour.retry_days):
            inv["next_payment_attempt"] = now + self.behaviour.retry_days[inv["_retries"]] * 86400
            inv["_retries"] += 1
        else:
            inv["next_payment_attempt"] = None
        if pi["status"] == "requires_action":
            self.emit("invoice.payment_action_required", inv)
        self.emit("invoice.payment_failed", inv)
        return False

    def _set_status(self, sub: dict[str, Any], status: str, **changes: Any) -> None:
        before = {k: sub[k] for k in ("status", *changes)}
        sub["status"] = status
        sub.update(changes)
        if before != {k: sub[k] for k in before}:
            self.emit("customer.subscription.updated", sub, _changed(before, sub))

    def _renew(self, sub: dict[str, Any]) -> None:
        cus = self.objects[sub["customer"]]
        before = {"items": copy.deepcopy(sub["items"]), "latest_invoice": sub["latest_invoice"],
                  "status": sub["status"]}
        start = sub["items"]["data"][0]["current_period_end"]
        end = period_after(start, sub["items"]["data"][0]["price"]["recurring"], sub["_anchor_day"])
        for item in sub["items"]["data"]:
            item["current_period_start"], item["current_period_end"] = start, end
        lines = self._pending_lines(sub) + [self._period_line(sub, item) for item in sub["items"]["data"]]
        if sub["status"] == "trialing":
            sub["status"] = "active"
        invoice = self._invoice(cus, sub, lines, "subscription_cycle", start, start)
        self.emit("customer.subscription.updated", sub, _changed(before, sub))
        if invoice["status"] != "paid" and not self._attempt(invoice, sub):
            self._set_status(sub, "past_due")

    def _retry(self, inv: dict[str, Any]) -> None:
        sub_id = ((inv.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        sub = self.objects.get(sub_id) if sub_id else None
        inv["next_payment_attempt"] = None
        if self._attempt(inv, sub):
            if sub is not None and sub["status"] in ("past_due", "unpaid", "incomplete"):
                self._set_status(sub, "active")
            return
        if inv["next_payment_attempt"] is None and sub is not None and sub["status"] in ("past_due", "active"):
            if self.behaviour.after_final_failure == "unpaid":
                self._set_status(sub, "unpaid")
            else:
                self._cancel(sub, "payment_failed")

    def _expire_incomplete(self, sub: dict[str, Any]) -> None:
        now = self.now_for(sub)
        self._set_status(sub, "incomplete_expired", ended_at=now)
        inv = self.objects.get(sub["latest_invoice"] or "")
        if inv and inv["status"] == "open":
            inv["status"] = "void"
            inv["status_transitions"]["voided_at"] = now
            self.emit("invoice.voided", inv)

    def _cancel(self, sub: dict[str, Any], reason: str) -> None:
        now = self.now_for(sub)
        sub.update(status="canceled", canceled_at=sub["canceled_at"] or now, ended_at=now)
        sub["cancellation_details"]["reason"] = reason
        self.emit("customer.subscription.deleted", sub)

    def _pending_lines(self, sub: dict[str, Any]) -> list[dict[str, Any]]:
        lines, sub["_pending"] = sub["_pending"], []
        return lines

    def update_subscription(self, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
        sub = self.get("subscription", sub_id)
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise StripeApiError(400, "A canceled subscription can only update its cancellation_details and "
                                 "metadata.")
        before = copy.deepcopy(sub)
        now = as_int(params["proration_date"], "proration_date") if params.get("proration_date") else self.now_for(sub)
        if "metadata" in params:
            sub["metadata"] = metadata_of(params, sub["metadata"])
        if "default_payment_method" in params:
            cus = self.objects[sub["customer"]]
            pm_id = params["default_payment_method"]
            sub["default_payment_method"] = (self._attached(pm_id, cus, "default_payment_method")["id"]
                                             if pm_id else None)
        if "cancel_at_period_end" in params:
            flag = as_bool(params["cancel_at_period_end"], "cancel_at_period_end")
            sub["cancel_at_period_end"] = flag
            sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"] if flag else None
            sub["canceled_at"] = now if flag else None
            if flag:
                sub["cancellation_details"]["reason"] = "cancellation_requested"
            else:
                sub["cancellation_details"]["reason"] = None
        proration = params.get("proration_behavior", "create_prorations")
        if proration not in ("create_prorations", "always_invoice", "none"):
            raise StripeApiError(400, f"Invalid proration_behavior: {proration}", param="proration_behavior")
        changes = as_list(params.get("items"))
        new_lines: list[dict[str, Any]] = []
        for index, change in enumerate(changes):
            item = next((i for i in sub["items"]["data"] if i["id"] == change.get("id")), None)
            if item is None:
                raise missing("subscription item", str(change.get("id")), f"items[{index}][id]")
            old_price, old_qty = item["price"], item["quantity"]
            price = self.get("price", change["price"], f"items[{index}][price]") if change.get("price") else old_price
            qty = as_int(change.get("quantity", old_qty), f"items[{index}][quantity]")
            if price["id"] == old_price["id"] and qty == old_qty:
                continue
            if price["recurring"]["interval"] != old_price["recurring"]["interval"]:
                raise StripeApiError(400, "Changing the billing interval is not supported by the local server.",
                                     param=f"items[{index}][price]")
            start, end = item["current_period_start"], item["current_period_end"]
            item["price"], item["quantity"] = public(price), qty
            if proration != "none" and sub["status"] in ("active", "past_due") and end > now:
                share = (end - now) / (end - start)
                credit = -round(old_price["unit_amount"] * old_qty * share)
                debit = round(price["unit_amount"] * qty * share)
                for amount, text, p in ((credit, "Unused time on", old_price), (debit, "Remaining time on", price)):
                    name = self.objects.get(p["product"], {}).get("name", p["product"])
                    ii = self.store({"id": new_id("ii"), "object": "invoiceitem", "amount": amount,
                                     "currency": p["currency"], "customer": sub["customer"], "date": now,
                                     "description": f"{text} {name} after "
                                     f"{datetime.fromtimestamp(now, UTC):%d %b %Y}", "invoice": None,
                                     "livemode": False, "metadata": {}, "period": {"start": now, "end": end},
                                     "proration": True, "quantity": qty if amount > 0 else old_qty,
                                     "subscription": sub["id"], "test_clock": sub["test_clock"],
                                     "_seq": self._seq()})
                    line_item = dict(item, price=public(p))
                    new_lines.append(self._line(sub, line_item, amount, ii["description"], now, end,
                                                proration=True, invoice_item=ii["id"]))
        sub["_pending"].extend(new_lines)
        if proration == "always_invoice" and sub["_pending"]:
            cus = self.objects[sub["customer"]]
            lines = self._pending_lines(sub)
            end = sub["items"]["data"][0]["current_period_end"]
            invoice = self._invoice(cus, sub, lines, "subscription_update", now, end)
            behaviour = params.get("payment_behavior", "allow_incomplete")
            if invoice["status"] != "paid" and not self._attempt(invoice, sub):
                if behaviour == "error_if_incomplete":
                    pm = self._payment_method_for(invoice, sub)
                    sub.clear()
                    sub.update(before)
                    invoice["status"] = "void"
                    raise _card_declined(pm["_spec"] if pm else {}, None)
                sub["status"] = "past_due"
        changed = _changed(before, sub)
        if changed:
            self.emit("customer.subscription.updated", sub, changed)
        return sub

    def cancel_subscription(self, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
        sub = self.get("subscription", sub_id)
        if sub["status"] == "canceled":
            raise StripeApiError(400, f"No such subscription: '{sub_id}'; it has already been canceled.",
                                 code="resource_missing")
        if isinstance(params.get("cancellation_details"), dict):
            sub["cancellation_details"]["comment"] = params["cancellation_details"].get("comment")
        self._cancel(sub, "cancellation_requested")
        return sub

    def resume_subscription(self, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Stripe's /resume is for paused subscriptions; one set to cancel at period end is resumed too."""
        sub = self.get("subscription", sub_id)
        if sub["status"] == "paused":
            self._set_status(sub, "active", pause_collection=None)
        elif sub["cancel_at_period_end"] and sub["status"] not in ("canceled", "incomplete_expired"):
            return self.update_subscription(sub_id, {"cancel_at_period_end": "false"})
        else:
            raise StripeApiError(400, "Only paused subscriptions or ones set to cancel can be resumed.")
        return sub

    # ----------------------------------------------------------------- invoices
    def pay_invoice(self, inv_id: str, params: dict[str, Any]) -> dict[str, Any]:
        inv = self.get("invoice", inv_id)
        if inv["status"] == "paid":
            raise StripeApiError(400, "Invoice is already paid", code="invoice_already_paid")
        if inv["status"] != "open":
            raise StripeApiError(400, f"You can only pay an open invoice; this one is {inv['status']}.")
        sub_id = ((inv.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        sub = self.objects.get(sub_id) if sub_id else None
        pm = None
        if params.get("payment_method"):
            pm = self._attached(params["payment_method"], self.objects[inv["customer"]], "payment_method")
        retries_before = inv["next_payment_attempt"]
        if self._attempt(inv, sub, pm):
            if sub is not None and sub["status"] in ("past_due", "unpaid", "incomplete"):
                self._set_status(sub, "active")
            return inv
        inv["next_payment_attempt"] = retries_before  # a manual attempt does not move the retry schedule
        pm = pm or self._payment_method_for(inv, sub)
        raise _card_declined(pm["_spec"] if pm else {}, None)

    def preview_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        """The next renewal invoice of a subscription (``POST /v1/invoices/create_preview``), not stored."""
        sub = self.get("subscription", params.get("subscription"), "subscription")
        cus = self.objects[sub["customer"]]
        lines = [dict(line) for line in sub["_pending"]]
        if not sub["cancel_at_period_end"] and sub["status"] not in ("canceled", "incomplete_expired"):
            for item in sub["items"]["data"]:
                start = item["current_period_end"]
                end = period_after(start, item["price"]["recurring"], sub["_anchor_day"])
                shifted = dict(item, current_period_start=start, current_period_end=end)
                lines.append(self._period_line(sub, shifted))
        total = sum(line["amount"] for line in lines)
        start = sub["items"]["data"][0]["current_period_end"]
        return {"id": None, "object": "invoice", "amount_due": max(0, total + min(cus["balance"], 0)),
                "amount_paid": 0, "amount_remaining": max(0, total + min(cus["balance"], 0)),
                "billing_reason": "upcoming", "created": start, "currency": sub["currency"], "customer": cus["id"],
                "lines": {"object": "list", "data": public(lines), "has_more": False, "url": ""}, "livemode": False,
                "next_payment_attempt": start, "parent": {"type": "subscription_details", "quote_details": None,
                                                          "subscription_details": {"metadata": sub["metadata"],
                                                                                   "subscription": sub["id"]}},
                "period_end": start, "period_start": sub["items"]["data"][0]["current_period_start"],
                "starting_balance": cus["balance"], "status": "draft", "subtotal": total, "total": total,
                "test_clock": sub["test_clock"]}


def _card_declined(spec: dict[str, Any], pi: dict[str, Any] | None) -> StripeApiError:
    extra: dict[str, Any] = {"decline_code": spec.get("decline_code", "generic_decline")}
    if pi is not None:
        extra["payment_intent"] = public(pi)
        extra["charge"] = pi.get("latest_charge")
    message = ("Your card has insufficient funds." if spec.get("decline_code") == "insufficient_funds"
               else "Your card was declined.")
    return StripeApiError(402, message, type="card_error", code="card_declined", **extra)


def _changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Stripe's ``previous_attributes``: the earlier values of the top-level fields that changed."""
    return {k: v for k, v in before.items() if not k.startswith("_") and after.get(k) != v}
