"""HTTP face of the local Stripe server: Stripe's wire format around ``engine.Engine``.

What the ``stripe`` SDK relies on is reproduced: form-encoded bodies with bracketed keys
(``items[0][price]``, ``expand[0]``), ``Authorization: Bearer sk_...`` (or HTTP Basic with the key as
user), JSON answers with ``Request-Id``, the ``{"error": {...}}`` envelope and its statuses, ``expand``,
cursor lists, and idempotency keys with Stripe's rules: the first response to a key is replayed
(``Idempotent-Replayed: true``) for 24 hours; the same key with other parameters or on another
endpoint is a 400 ``idempotency_error``. Every request runs to completion on the event loop without
awaiting in between, so two concurrent requests with one key can never both execute.

Non-Stripe control routes live under ``/_local/`` (webhook switches, delivery log, the count of API
requests received by method and path, a state dump).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stripelocal.engine import API_VERSION, Engine, StripeApiError, as_list, missing, new_id, public
from stripelocal.webhooks import Deliverer

IDEMPOTENCY_TTL_S = 24 * 3600


def parse_form(body: str) -> dict[str, Any]:
    """Stripe's bracketed form encoding into nested dicts (numeric keys stay dict keys; see ``as_list``)."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = result
        for index, part in enumerate(parts[:-1]):
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
            if parts[index + 1] == "":  # ``expand[]=x``: append
                parts[index + 1] = str(len(node))
        node[parts[-1]] = value
    return result


class LocalStripeApp:
    """Routes, auth, idempotency and expansion; the billing rules are the engine's."""

    def __init__(self, *, api_key: str, engine: Engine, deliverer: Deliverer,
                 on_change: Callable[[], None] | None = None) -> None:
        self.api_key = api_key
        self.engine = engine
        self.deliverer = deliverer
        self.on_change = on_change
        self.idempotency: dict[str, dict[str, Any]] = {}
        # API requests received, by "METHOD /path" (``GET /_local/requests``): what tests and benchmarks count
        self.requests: collections.Counter[str] = collections.Counter()
        engine.on_event = deliverer.enqueue
        e = engine
        self.routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("POST", "/v1/customers", lambda p: e.create_customer(p)),
            ("GET", "/v1/customers", lambda p: self._list("customer", p, email=p.get("email"))),
            ("GET", "/v1/customers/{id}", lambda p, id: self._get("customer", id)),
            ("POST", "/v1/customers/{id}", lambda p, id: e.update_customer(id, p)),
            ("DELETE", "/v1/customers/{id}", lambda p, id: e.delete_customer(id)),
            ("GET", "/v1/customers/{id}/payment_methods",
             lambda p, id: self._list("payment_method", p, customer=e.get("customer", id)["id"])),
            ("POST", "/v1/payment_methods", lambda p: e.create_payment_method(p)),
            ("GET", "/v1/payment_methods", lambda p: self._list("payment_method", p, customer=p.get("customer"))),
            ("GET", "/v1/payment_methods/{id}", lambda p, id: self._get("payment_method", id)),
            ("POST", "/v1/payment_methods/{id}/attach", lambda p, id: e.attach_payment_method(id, p)),
            ("POST", "/v1/payment_methods/{id}/detach", lambda p, id: e.detach_payment_method(id)),
            ("POST", "/v1/products", lambda p: e.create_product(p)),
            ("GET", "/v1/products", lambda p: self._list("product", p)),
            ("GET", "/v1/products/{id}", lambda p, id: self._get("product", id)),
            ("POST", "/v1/products/{id}", lambda p, id: e.update_product(id, p)),
            ("POST", "/v1/prices", lambda p: e.create_price(p)),
            ("GET", "/v1/prices", self._list_prices),
            ("GET", "/v1/prices/{id}", lambda p, id: self._get("price", id)),
            ("POST", "/v1/prices/{id}", lambda p, id: e.update_price(id, p)),
            ("POST", "/v1/subscriptions", lambda p: e.create_subscription(p)),
            ("GET", "/v1/subscriptions", self._list_subscriptions),
            ("GET", "/v1/subscriptions/{id}", lambda p, id: self._get("subscription", id)),
            ("POST", "/v1/subscriptions/{id}", lambda p, id: e.update_subscription(id, p)),
            ("DELETE", "/v1/subscriptions/{id}", lambda p, id: e.cancel_subscription(id, p)),
            ("POST", "/v1/subscriptions/{id}/resume", lambda p, id: e.resume_subscription(id, p)),
            ("GET", "/v1/subscription_items/{id}", self._subscription_item),
            ("GET", "/v1/invoices", lambda p: self._list("invoice", p, customer=p.get("customer"),
                                                         status=p.get("status"), subscription=p.get("subscription"))),
            ("POST", "/v1/invoices/create_preview", lambda p: e.preview_invoice(p)),
            ("GET", "/v1/invoices/{id}", lambda p, id: self._get("invoice", id)),
            ("GET", "/v1/invoices/{id}/lines", lambda p, id: self._sublist(e.get("invoice", id)["lines"], p)),
            ("POST", "/v1/invoices/{id}/pay", lambda p, id: e.pay_invoice(id, p)),
            ("GET", "/v1/invoice_payments", self._list_invoice_payments),
            ("GET", "/v1/invoice_payments/{id}", lambda p, id: self._get("invoice_payment", id)),
            ("GET", "/v1/invoiceitems/{id}", lambda p, id: self._get("invoiceitem", id)),
            ("POST", "/v1/payment_intents", lambda p: e.create_payment_intent(p)),
            ("GET", "/v1/payment_intents", lambda p: self._list("payment_intent", p, customer=p.get("customer"))),
            ("GET", "/v1/payment_intents/{id}", lambda p, id: self._get("payment_intent", id)),
            ("POST", "/v1/payment_intents/{id}/confirm", lambda p, id: e.confirm_payment_intent(id, p)),
            ("POST", "/v1/setup_intents", lambda p: e.create_setup_intent(p)),
            ("GET", "/v1/setup_intents/{id}", lambda p, id: self._get("setup_intent", id)),
            ("POST", "/v1/setup_intents/{id}/confirm", lambda p, id: e.confirm_setup_intent(id, p)),
            ("GET", "/v1/charges", lambda p: self._list("charge", p, customer=p.get("customer"),
                                                        payment_intent=p.get("payment_intent"))),
            ("GET", "/v1/charges/{id}", lambda p, id: self._get("charge", id)),
            ("POST", "/v1/refunds", lambda p: e.create_refund(p)),
            ("GET", "/v1/refunds", lambda p: self._list("refund", p, charge=p.get("charge"),
                                                        payment_intent=p.get("payment_intent"))),
            ("GET", "/v1/refunds/{id}", lambda p, id: self._get("refund", id)),
            ("GET", "/v1/balance_transactions/{id}", lambda p, id: self._get("balance_transaction", id)),
            ("GET", "/v1/events", lambda p: self._list("event", p, type=p.get("type"))),
            ("GET", "/v1/events/{id}", lambda p, id: self._get("event", id)),
            ("POST", "/v1/test_helpers/test_clocks", lambda p: e.create_clock(p)),
            ("GET", "/v1/test_helpers/test_clocks", lambda p: self._list("test_helpers.test_clock", p)),
            ("GET", "/v1/test_helpers/test_clocks/{id}", lambda p, id: self._get("test_helpers.test_clock", id)),
            ("POST", "/v1/test_helpers/test_clocks/{id}/advance", lambda p, id: e.advance_clock(id, p)),
            ("POST", "/v1/webhook_endpoints", lambda p: self.deliverer.add_endpoint(
                p.get("url", ""), as_list(p.get("enabled_events")) or ["*"], metadata=p.get("metadata"))),
            ("GET", "/v1/webhook_endpoints", lambda p: self._plain_list(
                [public(x) for x in self.deliverer.endpoints.values()], "/v1/webhook_endpoints")),
            ("DELETE", "/v1/webhook_endpoints/{id}", lambda p, id: self.deliverer.remove_endpoint(id)),
        ]

    # ----------------------------------------------------------------- Starlette wiring
    def starlette(self) -> Starlette:
        routes = [Route("/_local/webhooks", self._local_webhooks, methods=["GET", "POST"]),
                  Route("/_local/deliveries", self._local_deliveries, methods=["GET"]),
                  Route("/_local/requests", self._local_requests, methods=["GET"]),
                  Route("/_local/health", lambda r: JSONResponse({"ok": True}), methods=["GET"]),
                  Route("/{path:path}", self._dispatch, methods=["GET", "POST", "DELETE"])]

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            await self.deliverer.start()
            try:
                yield
            finally:
                await self.deliverer.stop()

        return Starlette(routes=routes, lifespan=lifespan)

    async def _dispatch(self, request: Request) -> Response:
        request_id = "req_" + secrets.token_hex(7)
        body = (await request.body()).decode()
        # No await from here on: a request is one atomic step of the state machine.
        headers = {"Request-Id": request_id, "Stripe-Version": request.headers.get("stripe-version", API_VERSION)}
        try:
            self._authenticate(request)
        except StripeApiError as error:
            return JSONResponse({"error": error.body}, status_code=error.status, headers=headers)
        method, path = request.method, request.url.path
        self.requests[f"{method} {path}"] += 1
        params = parse_form(request.url.query if method in ("GET", "DELETE") and not body else body)
        key = request.headers.get("idempotency-key") if method in ("POST", "DELETE") else None
        if key:
            replay = self._replay(key, method, path, params, headers)
            if replay is not None:
                return replay
        self.engine._request = {"id": request_id, "idempotency_key": key}
        try:
            self.engine.tick()
            status, payload = 200, self._route(method, path, params)
        except StripeApiError as error:
            error.body.setdefault("request_log_url", f"https://dashboard.stripe.com/test/logs/{request_id}")
            status, payload = error.status, {"error": error.body}
        finally:
            self.engine._request = {"id": None, "idempotency_key": None}
        if key:
            self.idempotency[self._key(key)] = {"method": method, "path": path, "params": _fingerprint(params),
                                                "status": status, "payload": payload, "request_id": request_id,
                                                "at": time.time()}
            headers["Idempotency-Key"] = key
        if method != "GET" and self.on_change is not None:
            self.on_change()
        return JSONResponse(payload, status_code=status, headers=headers)

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "basic":
            credential = base64.b64decode(credential).decode(errors="replace").partition(":")[0]
        elif scheme.lower() != "bearer":
            credential = ""
        if not credential:
            raise StripeApiError(401, "You did not provide an API key. You need to provide your API key in the "
                                 "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                                 "YOUR_SECRET_KEY').")
        if not secrets.compare_digest(credential, self.api_key):
            shown = credential[:8] + "*" * max(0, len(credential) - 12) + credential[-4:]
            raise StripeApiError(401, f"Invalid API Key provided: {shown}")

    def _key(self, key: str) -> str:
        return hashlib.sha256(f"{self.api_key}\0{key}".encode()).hexdigest()

    def _replay(self, key: str, method: str, path: str, params: dict[str, Any],
                headers: dict[str, str]) -> Response | None:
        now = time.time()
        # keys are kept in the order they were first used: the stale ones are at the front
        while self.idempotency and now - next(iter(self.idempotency.values()))["at"] > IDEMPOTENCY_TTL_S:
            del self.idempotency[next(iter(self.idempotency))]
        saved = self.idempotency.get(self._key(key))
        if saved is None:
            return None
        if saved["method"] != method or saved["path"] != path:
            error = StripeApiError(400, f"Keys for idempotent requests can only be used for the same endpoint they "
                                   f"were first used for ('{saved['method']} {saved['path']}' vs '{method} {path}'). "
                                   f"Try using a key other than '{key}' if you meant to execute a different request.",
                                   type="idempotency_error")
            return JSONResponse({"error": error.body}, status_code=400, headers=headers)
        if saved["params"] != _fingerprint(params):
            error = StripeApiError(400, "Keys for idempotent requests can only be used with the same parameters they "
                                   f"were first used with. Try using a key other than '{key}' if you meant to "
                                   "execute a different request.", type="idempotency_error")
            return JSONResponse({"error": error.body}, status_code=400, headers=headers)
        headers.update({"Idempotency-Key": key, "Idempotent-Replayed": "true",
                        "Original-Request": saved["request_id"]})
        return JSONResponse(saved["payload"], status_code=saved["status"], headers=headers)

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        parts = path.rstrip("/").split("/")
        for verb, pattern, handler in self.routes:
            pattern_parts = pattern.split("/")
            if verb != method or len(pattern_parts) != len(parts):
                continue
            args: dict[str, str] = {}
            for want, got in zip(pattern_parts, parts, strict=True):
                if want == "{id}":
                    args["id"] = got
                elif want != got:
                    break
            else:
                # a literal sibling ("create_preview") wins over "{id}": routes list literals first
                result = handler(params, **args)
                return self._expand(public(result), as_list(params.get("expand")))
        raise StripeApiError(404, f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
                             "or we can help at https://support.stripe.com/.")

    # ----------------------------------------------------------------- reads
    def _get(self, kind: str, ident: str) -> dict[str, Any]:
        return self.engine.get(kind, ident)

    def _plain_list(self, data: list[dict[str, Any]], url: str) -> dict[str, Any]:
        return {"object": "list", "data": data, "has_more": False, "url": url}

    def _list(self, kind: str, params: dict[str, Any], **filters: Any) -> dict[str, Any]:
        wanted = {k: v for k, v in filters.items() if v is not None}

        def match(obj: dict[str, Any]) -> bool:
            for key, value in wanted.items():
                if key == "subscription":
                    parent = (obj.get("parent") or {}).get("subscription_details") or {}
                    if parent.get("subscription") != value:
                        return False
                elif obj.get(key) != value:
                    return False
            return True

        return self._page(self.engine.list_of(kind, match), params, "/v1/" + kind.split(".")[-1] + "s")

    def _page(self, items: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
        limit = max(1, min(100, int(params.get("limit") or 10)))
        after = params.get("starting_after")
        if after:
            ids = [o["id"] for o in items]
            if after not in ids:
                raise missing("object", after, "starting_after")
            items = items[ids.index(after) + 1:]
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}

    def _sublist(self, lst: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        return self._page(lst["data"], params, lst["url"])

    def _list_prices(self, params: dict[str, Any]) -> dict[str, Any]:
        keys = set(as_list(params.get("lookup_keys")))
        active = params.get("active")
        return self._page(self.engine.list_of("price", lambda p: (not keys or p["lookup_key"] in keys)
                                              and (not params.get("product") or p["product"] == params["product"])
                                              and (active is None or str(p["active"]).lower() == active)),
                          params, "/v1/prices")

    def _list_invoice_payments(self, params: dict[str, Any]) -> dict[str, Any]:
        """By ``invoice`` (its own payments, not a scan of every payment) and ``status``."""
        status = params.get("status")
        if params.get("invoice"):
            invoice = self.engine.get("invoice", params["invoice"], "invoice")
            newest_first = [self.engine.objects[p["id"]] for p in invoice["payments"]["data"]]
            items = [p for p in newest_first if status is None or p["status"] == status]
        else:
            items = self.engine.list_of("invoice_payment", lambda p: status is None or p["status"] == status)
        return self._page(items, params, "/v1/invoice_payments")

    def _list_subscriptions(self, params: dict[str, Any]) -> dict[str, Any]:
        status = params.get("status")

        def match(sub: dict[str, Any]) -> bool:
            if params.get("customer") and sub["customer"] != params["customer"]:
                return False
            if params.get("price") and all(i["price"]["id"] != params["price"] for i in sub["items"]["data"]):
                return False
            if status == "all":
                return True
            if status:
                return sub["status"] == status
            return sub["status"] not in ("canceled", "incomplete_expired")

        return self._page(self.engine.list_of("subscription", match), params, "/v1/subscriptions")

    def _subscription_item(self, params: dict[str, Any], id: str) -> dict[str, Any]:
        for sub in self.engine.list_of("subscription"):
            for item in sub["items"]["data"]:
                if item["id"] == id:
                    return item
        raise missing("subscription item", id)

    def _expand(self, value: Any, paths: list[str]) -> Any:
        for path in paths:
            value = self._expand_path(value, path.split("."))
        return value

    def _expand_path(self, value: Any, segments: list[str]) -> Any:
        if not segments:
            return value
        if isinstance(value, list):
            return [self._expand_path(v, segments) for v in value]
        if not isinstance(value, dict):
            return value
        key, rest = segments[0], segments[1:]
        child = value.get(key)
        if isinstance(child, str) and child in self.engine.objects:
            child = public(self.engine.objects[child])
        value[key] = self._expand_path(child, rest)
        return value

    # ----------------------------------------------------------------- local control routes
    async def _local_webhooks(self, request: Request) -> Response:
        """Webhook switches: ``{"duplicates": 2, "reorder": true, "delay_s": 0.5, "hold": true}``; ``release``."""
        if request.method == "POST":
            changes = await request.json()
            if changes.pop("release", False):
                self.deliverer.release()
            if "endpoint" in changes:
                endpoint = changes.pop("endpoint")
                self.deliverer.add_endpoint(endpoint["url"], endpoint.get("enabled_events", ["*"]),
                                            secret=endpoint.get("secret"))
            self.deliverer.configure(**changes)
        return JSONResponse(self.deliverer.switches())

    async def _local_deliveries(self, request: Request) -> Response:
        return JSONResponse({"data": self.deliverer.log})

    async def _local_requests(self, request: Request) -> Response:
        """``{"GET /v1/subscriptions/sub_...": 3, ...}``: the API requests received so far."""
        return JSONResponse(dict(self.requests))


def _fingerprint(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def new_secret_key() -> str:
    return "sk_test_" + new_id("local").removeprefix("local_")
