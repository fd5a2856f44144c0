"""The webhook handler killed mid-way: the app runs as its own process (uvicorn) receiving the local
Stripe server's real deliveries; a fault-injection setting makes that process exit before or after the
transaction commits on ``invoice.paid``. Stripe's retry then reaches a fresh process: the ledger
balances and nothing is counted twice."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from accounts.model import Principal, Role
from billing import ledger, subscriptions
from stripelocal import LocalStripe
from tests.conftest import free_port
from tests.stripe_support import wait_for

WEBHOOK_SECRET = "whsec_crash_" + uuid.uuid4().hex


def _launch(port: int, server: LocalStripe, crash_at: str = "") -> subprocess.Popen:
    env = {**os.environ, "VERSEFLOW_STRIPE_SECRET_KEY": server.api_key, "VERSEFLOW_STRIPE_API_BASE": server.url,
           "VERSEFLOW_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "VERSEFLOW_BILLING_CRASH_AT": crash_at}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "serve_deployments.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env=env, cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up() -> bool:
        if process.poll() is not None:
            return True
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout_s=120)
    return process


async def _user(pool) -> Principal:
    user_id = uuid.uuid4()
    await pool.execute("INSERT INTO users (id, email, password_hash, display_name, role) VALUES ($1, $2, 'x', 'c',"
                       " 'listener')", user_id, f"crash-{user_id.hex[:8]}@example.com")
    return Principal(user_id, Role.LISTENER)


@pytest.mark.parametrize("step", ["before_commit", "after_commit"])
async def test_a_handler_killed_before_or_after_commit_counts_the_payment_once(step, pool, settings):
    port = free_port()
    server = LocalStripe(webhook_url=f"http://127.0.0.1:{port}/v1/billing/stripe/webhook",
                         webhook_secret=WEBHOOK_SECRET, retry_delays_s=(1, 2, 3, 4, 5, 6, 8, 10, 15)).start()
    first = _launch(port, server, crash_at=f"{step}:invoice.paid")
    second = None
    try:
        from pydantic import SecretStr

        configured = settings.model_copy(update={"stripe_secret_key": SecretStr(server.api_key),
                                                 "stripe_api_base": server.url})
        who = await _user(pool)
        await subscriptions.subscribe(pool, configured, who, plan="premium", payment_method="pm_card_visa")
        first.wait(timeout=60)
        assert first.returncode == 70, first.stderr.read().decode()[-2000:]
        invoice_paid = next(e for e in server.engine.events if e["type"] == "invoice.paid")
        recorded = await pool.fetchval("SELECT count(*) FROM billing_webhook_events WHERE stripe_event_id = $1",
                                       invoice_paid["id"])
        assert recorded == (0 if step == "before_commit" else 1)

        second = _launch(port, server)
        wanted = {e["id"] for e in server.engine.events}
        wait_for(lambda: wanted <= {d["event"] for d in server.deliverer.log if d["status"] == 200}, timeout_s=90)
        customer = await pool.fetchval("SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1",
                                       who.user_id)
        async with pool.acquire() as conn:
            booked = [e for e in await ledger.entries_for(conn, "stripe:invoice.paid:")
                      if e["metadata"]["customer"] == customer]
            assert len(booked) == 1
            assert (await ledger.trial_balance(conn)).get("eur", 0) == 0
        assert await pool.fetchval("SELECT count(*) FROM billing_webhook_events WHERE stripe_event_id = $1",
                                   invoice_paid["id"]) == 1
        attempts = [d for d in server.deliverer.log if d["event"] == invoice_paid["id"]]
        assert attempts[0]["status"] is None and attempts[-1]["status"] == 200  # died, then retried
        assert await subscriptions.plan_of(pool, configured, who.user_id) == "premium"
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        server.stop()
