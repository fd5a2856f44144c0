"""The operator's billing report: MRR and churn from the stored subscriptions, revenue from the journal."""

# ruff: noqa: F811 - the tests take the imported billing fixtures as arguments, which pytest matches by name
from __future__ import annotations

import uuid
from datetime import UTC, datetime

from billing import reports
from tests.test_billing import (  # noqa: F401 - the billing module's fixtures, reused as they are
    Webhooks,
    billing_app,
    billing_settings,
    http,
    listener,
    sdk,
    stripe_server,
)


async def _subscription(pool, user_id, *, plan, amount, status, started, ended=None):
    await pool.execute(
        """INSERT INTO billing_subscriptions (stripe_subscription_id, user_id, plan, status, stripe_price_id, currency,
                                              unit_amount, interval, started_at, ended_at)
           VALUES ($1, $2, $3, $4, 'price_x', 'eur', $5, 'month', $6, $7)""",
        f"sub_{uuid.uuid4().hex[:14]}", user_id, plan, status, amount, started, ended)


async def test_mrr_and_churn_of_a_month_with_known_answers(http, pool):
    users = [uuid.UUID((await listener(http))["id"]) for _ in range(4)]
    march = datetime(2020, 2, 10, tzinfo=UTC)  # all four live on 1 March 2020
    await _subscription(pool, users[0], plan="premium", amount=999, status="active", started=march)
    await _subscription(pool, users[1], plan="premium", amount=999, status="canceled", started=march,
                        ended=datetime(2020, 3, 20, tzinfo=UTC))  # churned in March
    await _subscription(pool, users[2], plan="family", amount=1599, status="active", started=march)
    await _subscription(pool, users[3], plan="family", amount=1599, status="canceled", started=march,
                        ended=datetime(2020, 4, 1, tzinfo=UTC))  # ends the moment April starts: live all March
    await _subscription(pool, users[0], plan="premium", amount=999, status="incomplete_expired",
                        started=datetime(2020, 3, 2, tzinfo=UTC))  # never paid: counts nowhere
    report = await reports.month_report(pool, "2020-03")
    assert report.mrr == {("family", "eur"): 3198, ("premium", "eur"): 999}
    assert report.subscribers_at_start == 4 and report.churn_rate == 0.25
    assert report.revenue == []  # nothing was booked in 2020


async def test_the_report_route_is_for_administrators_and_counts_a_new_subscription(http, pool, stripe_server, sink):
    admin = await listener(http)
    await pool.execute("UPDATE users SET role = 'admin' WHERE id = $1", uuid.UUID(admin["id"]))
    token = await http.post("/v1/auth/token", data={"username": admin["email"], "password": admin["password"]})
    admin["headers"] = {"Authorization": f"Bearer {token.json()['access_token']}"}
    month = datetime.now(UTC).strftime("%Y-%m")
    someone = await listener(http)
    assert (await http.get(f"/v1/admin/billing/report?month={month}", headers=someone["headers"])).status_code == 403
    assert (await http.get("/v1/admin/billing/report?month=2026-13", headers=admin["headers"])).status_code == 422

    def premium_mrr(body: dict) -> int:
        return sum(m["amount"] for m in body["mrr"] if m["plan"] == "premium")

    def premium_revenue(body: dict) -> int:
        return sum(r["revenue"] for r in body["revenue"] if r["plan"] == "premium")

    before = (await http.get(f"/v1/admin/billing/report?month={month}", headers=admin["headers"])).json()
    made = await http.post("/v1/billing/subscription", json={"plan": "premium", "payment_method": "pm_card_visa"},
                           headers=someone["headers"])
    assert made.status_code == 200, made.text
    await Webhooks(stripe_server, sink, http).deliver_new()  # the first invoice is booked from invoice.paid
    after = (await http.get(f"/v1/admin/billing/report?month={month}", headers=admin["headers"])).json()
    assert premium_mrr(after) - premium_mrr(before) == 999
    assert premium_revenue(after) - premium_revenue(before) == 999
