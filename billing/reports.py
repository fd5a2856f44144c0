"""The operator's monthly figures: MRR, subscriber churn and revenue by plan, for one calendar month.

MRR and churn come from the subscriptions as last read from Stripe (``billing_subscriptions``: price,
interval, when each started and ended), through the exact functions of ``ledger.py``; revenue comes
from the journal, so it is what was actually booked (prorations and credits included), not list prices.
Subscriptions that never became live (``incomplete``, ``incomplete_expired``: the first payment failed)
count in neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

from billing import ledger
from billing.royalties import month_bounds

NEVER_LIVE = ("incomplete", "incomplete_expired")


@dataclass(frozen=True)
class MonthReport:
    month: str
    mrr_at: datetime  # the month's end, or now for the current month
    mrr: dict[tuple[str, str], int]  # (plan, currency) -> minor units per month
    churn_rate: float
    subscribers_at_start: int
    revenue: list[ledger.RevenueRow]


async def month_report(pool: asyncpg.Pool, month: str, *, now: datetime | None = None) -> MonthReport:
    """The figures of ``month`` (YYYY-MM); a month still running is measured up to ``now``."""
    start, end = month_bounds(month)
    now = now or datetime.now(UTC)
    at = min(end, now)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT plan, currency, unit_amount, interval, started_at, ended_at FROM billing_subscriptions
               WHERE status <> ALL($1::text[]) AND started_at < $2""", list(NEVER_LIVE), end)
        revenue = await ledger.revenue_by_plan_and_month(conn, since=start, until=end)
    snapshots = [ledger.SubscriptionSnapshot(plan=r["plan"], currency=r["currency"], unit_amount=r["unit_amount"],
                                             interval=r["interval"], interval_count=1, started_at=r["started_at"],
                                             ended_at=r["ended_at"]) for r in rows]
    live_at_start = sum(1 for s in snapshots if s.started_at <= start and (s.ended_at is None or s.ended_at > start))
    # mrr counts what is live at an instant; at the month's exact end that is the next month's first moment
    return MonthReport(month=month, mrr_at=at, mrr=ledger.mrr(snapshots, at - _EPSILON if at == end else at),
                       churn_rate=ledger.churn_rate(snapshots, date(start.year, start.month, 1)),
                       subscribers_at_start=live_at_start, revenue=revenue)


_EPSILON = datetime.resolution
