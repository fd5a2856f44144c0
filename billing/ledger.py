"""The double-entry ledger: journal entries in integer minor units, and the reports read from them.

Why double-entry: every cent that moves is recorded twice, once where it comes from and once where
it goes, so "where did this money go" always has an answer and the books can be checked (every entry,
and so the whole ledger, sums to zero per currency). The rule is enforced twice: ``JournalEntry``
refuses an unbalanced entry before it reaches the database, and the database refuses to commit one
(a deferred constraint trigger, ``verseflow/sql/0016_ledger.sql``), whatever code wrote it.

Sign convention: a posting's amount is positive for a debit and negative for a credit. Assets and
expenses grow with debits; revenue, liabilities and equity with credits, so reports show those negated.

Accounts (one per code and currency, created on first use):

| code | kind | what |
|---|---|---|
| ``stripe_balance`` | asset | money held for us by Stripe |
| ``stripe_fees`` | expense | Stripe's processing fees |
| ``revenue:<plan>`` | revenue | subscription revenue, per plan |
| ``refunds`` | contra-revenue | money given back |
| ``royalty_pool`` | expense | the artists' share of a month's revenue (royalty runs) |
| ``royalties_payable:<artist>`` | liability | owed to one artist until paid out |
| ``platform_share`` | equity | what VerseFlow keeps |
| ``customer_credit`` | liability | credit Stripe holds for a customer (a downgrade's proration) |

Entries are idempotent by ``source_key`` (``stripe:invoice.paid:in_...``): posting the same source
twice records it once, so redelivered webhooks and retried jobs never count money twice.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any

import asyncpg

from verseflow.db import like_literal
from verseflow.errors import InvalidInput
from verseflow.events import outbox

STRIPE_BALANCE = "stripe_balance"
STRIPE_FEES = "stripe_fees"
REFUNDS = "refunds"
ROYALTY_POOL = "royalty_pool"
PLATFORM_SHARE = "platform_share"
CUSTOMER_CREDIT = "customer_credit"

_KINDS = {
    STRIPE_BALANCE: "asset", STRIPE_FEES: "expense", REFUNDS: "contra_revenue", ROYALTY_POOL: "expense",
    PLATFORM_SHARE: "equity", CUSTOMER_CREDIT: "liability", "revenue": "revenue", "royalties_payable": "liability",
}
_PARAMETRIZED = {"revenue", "royalties_payable"}
_CODE = re.compile(r"^[a-z_]+(:[A-Za-z0-9_-]+)?$")
_CURRENCY = re.compile(r"^[a-z]{3}$")


class UnbalancedEntry(InvalidInput):
    """A journal entry whose debits and credits differ, or that has fewer than two postings."""


def revenue(plan: str) -> str:
    return f"revenue:{plan}"


def royalties_payable(artist_id: uuid.UUID | str) -> str:
    return f"royalties_payable:{artist_id}"


def kind_of(code: str) -> str:
    """The account kind a code names (``revenue:premium`` → ``revenue``)."""
    if not _CODE.match(code):
        raise InvalidInput(f"not a ledger account code: {code!r}")
    prefix, _, suffix = code.partition(":")
    kind = _KINDS.get(prefix) if suffix and prefix in _PARAMETRIZED else None if suffix else _KINDS.get(code)
    if kind is None or (prefix in _PARAMETRIZED and not suffix):
        raise InvalidInput(f"unknown ledger account: {code!r}")
    return kind


@dataclass(frozen=True)
class Posting:
    """One side of an entry: ``amount`` minor units, positive = debit, negative = credit."""

    account: str
    amount: int


@dataclass(frozen=True)
class JournalEntry:
    """A balanced set of postings in one currency, with the source that caused it."""

    source_key: str
    description: str
    currency: str
    postings: tuple[Posting, ...]
    occurred_at: datetime
    metadata: Mapping[str, Any] = field(default_factory=dict)
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        if not _CURRENCY.match(self.currency):
            raise InvalidInput(f"currency must be a lowercase ISO 4217 code, not {self.currency!r}")
        if len(self.postings) < 2:
            raise UnbalancedEntry("a journal entry needs at least two postings")
        for posting in self.postings:
            kind_of(posting.account)
            if not isinstance(posting.amount, int) or isinstance(posting.amount, bool) or posting.amount == 0:
                raise UnbalancedEntry(f"posting amounts are non-zero integers in minor units: {posting!r}")
        total = sum(p.amount for p in self.postings)
        if total != 0:
            raise UnbalancedEntry(f"entry {self.source_key} does not balance: debits minus credits = {total}")
        if self.occurred_at.tzinfo is None:
            raise InvalidInput("occurred_at must be timezone-aware")


# --------------------------------------------------------------------------- entries billing posts

def subscription_payment(*, source_key: str, plan: str, currency: str, amount: int, fee: int,
                         occurred_at: datetime, metadata: Mapping[str, Any] | None = None) -> JournalEntry:
    """A paid invoice: revenue for the plan into Stripe's balance, then Stripe's fee out of it."""
    postings = [Posting(STRIPE_BALANCE, amount), Posting(revenue(plan), -amount)]
    if fee:
        postings += [Posting(STRIPE_FEES, fee), Posting(STRIPE_BALANCE, -fee)]
    return JournalEntry(source_key, f"subscription payment ({plan})", currency, tuple(postings), occurred_at,
                        dict(metadata or {}))


def invoice_payment(*, source_key: str, currency: str, amount_paid: int, fee: int, revenue_by_plan: Mapping[str, int],
                    occurred_at: datetime, metadata: Mapping[str, Any] | None = None) -> JournalEntry | None:
    """A paid invoice whose lines may span plans and prorations; None when no money or revenue moved.

    Revenue is booked per plan from the invoice lines (a proration credit reduces its plan's revenue);
    the difference between the lines and what was charged is customer credit used (or created).
    """
    postings = [Posting(STRIPE_BALANCE, amount_paid)] if amount_paid else []
    postings += [Posting(revenue(plan), -amount) for plan, amount in sorted(revenue_by_plan.items()) if amount]
    credit_used = sum(revenue_by_plan.values()) - amount_paid
    if credit_used:
        postings.append(Posting(CUSTOMER_CREDIT, credit_used))
    if fee:
        postings += [Posting(STRIPE_FEES, fee), Posting(STRIPE_BALANCE, -fee)]
    if len(postings) < 2:
        return None
    return JournalEntry(source_key, "invoice paid", currency, tuple(postings), occurred_at, dict(metadata or {}))


def refund(*, source_key: str, currency: str, amount: int, occurred_at: datetime,
           metadata: Mapping[str, Any] | None = None) -> JournalEntry:
    """Money returned to a customer out of Stripe's balance (Stripe keeps the original fee)."""
    return JournalEntry(source_key, "refund", currency, (Posting(REFUNDS, amount), Posting(STRIPE_BALANCE, -amount)),
                        occurred_at, dict(metadata or {}))


def royalty_allocation(*, source_key: str, currency: str, allocations: Mapping[str, int], occurred_at: datetime,
                       metadata: Mapping[str, Any] | None = None) -> JournalEntry:
    """A royalty run's result: the pool, as an expense, owed to each artist (amounts already rounded)."""
    pool = sum(allocations.values())
    postings = [Posting(ROYALTY_POOL, pool)] + [Posting(royalties_payable(a), -v) for a, v in allocations.items() if v]
    return JournalEntry(source_key, "royalty allocation", currency, tuple(postings), occurred_at,
                        dict(metadata or {}))


# --------------------------------------------------------------------------- repository

async def _account_ids(conn: asyncpg.Connection, codes: Iterable[str], currency: str) -> dict[str, int]:
    codes = sorted(set(codes))
    await conn.execute(
        "INSERT INTO ledger_accounts (code, kind, currency)"
        " SELECT c, k, $3 FROM unnest($1::text[], $2::text[]) AS t(c, k) ON CONFLICT (code, currency) DO NOTHING",
        codes, [kind_of(c) for c in codes], currency)
    rows = await conn.fetch("SELECT code, id FROM ledger_accounts WHERE currency = $1 AND code = ANY($2::text[])",
                            currency, codes)
    return {r["code"]: r["id"] for r in rows}


# One round trip for an entry, its accounts (created on first use) and its postings. Accounts made by
# another transaction that commits while this statement runs are invisible to it (its snapshot predates
# them, and ON CONFLICT DO NOTHING does not return them): their postings are left out and returned as
# ``missing``, and ``post`` books them in a second statement, which sees those accounts. ``announce``: the
# caller's outbox event, recorded only with a new entry.
_ANNOUNCE = outbox.insert_sql(10, when="$10::uuid IS NOT NULL AND EXISTS (SELECT FROM entry)")
_POST = f"""
    WITH entry AS (
        INSERT INTO ledger_entries (id, source_key, description, occurred_at, metadata) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (source_key) DO NOTHING RETURNING id),
    line AS (SELECT * FROM unnest($7::text[], $8::text[], $9::bigint[]) WITH ORDINALITY AS l (code, kind, amount, n)),
    created AS (
        INSERT INTO ledger_accounts (code, kind, currency)
        SELECT DISTINCT code, kind, $6 FROM line WHERE EXISTS (SELECT FROM entry)
        ON CONFLICT (code, currency) DO NOTHING RETURNING id, code),
    account AS (
        SELECT id, code FROM created
        UNION ALL SELECT id, code FROM ledger_accounts WHERE currency = $6 AND code = ANY($7::text[])),
    posted AS (
        INSERT INTO ledger_postings (entry_id, account_id, currency, amount)
        SELECT entry.id, account.id, $6, line.amount FROM entry, line JOIN account USING (code)),
    announced AS ({_ANNOUNCE})
    SELECT EXISTS (SELECT FROM entry) AS inserted,
           (SELECT array_agg(n) FROM line WHERE code NOT IN (SELECT code FROM account)) AS missing"""


async def post(conn: asyncpg.Connection, entry: JournalEntry, *, announce: outbox.Event | None = None) -> bool:
    """Record ``entry`` in the caller's transaction; False (and nothing written) if its source was posted before.

    ``announce``, an outbox event, is recorded with the entry (not at all if it was posted before). One
    statement in the steady state (every account exists); the database checks at commit that the entry
    balances, whatever this code did.
    """
    codes = [p.account for p in entry.postings]
    row = await conn.fetchrow(_POST, entry.id, entry.source_key, entry.description, entry.occurred_at,
                              dict(entry.metadata), entry.currency, codes, [kind_of(c) for c in codes],
                              [p.amount for p in entry.postings],
                              *(outbox.insert_args(announce) if announce else (None,) * 5))
    if not row["inserted"]:
        return False
    if row["missing"]:  # accounts another transaction created meanwhile (see _POST)
        missing = [entry.postings[n - 1] for n in row["missing"]]
        ids = await _account_ids(conn, (p.account for p in missing), entry.currency)
        await conn.execute(
            "INSERT INTO ledger_postings (entry_id, account_id, currency, amount)"
            " SELECT $1, a, $2, m FROM unnest($3::bigint[], $4::bigint[]) AS t(a, m)",
            entry.id, entry.currency, [ids[p.account] for p in missing], [p.amount for p in missing])
    return True


async def balance(conn: asyncpg.Connection, account: str, currency: str) -> int:
    """Debits minus credits of one account (negate for revenue, liabilities and equity)."""
    return await conn.fetchval(
        "SELECT coalesce(sum(p.amount), 0)::bigint FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id"
        " WHERE a.code = $1 AND a.currency = $2", account, currency)


async def balances(conn: asyncpg.Connection, currency: str) -> dict[str, int]:
    """Every account's debits minus credits in ``currency``."""
    rows = await conn.fetch(
        "SELECT a.code, coalesce(sum(p.amount), 0)::bigint AS total FROM ledger_accounts a"
        " LEFT JOIN ledger_postings p ON p.account_id = a.id WHERE a.currency = $1 GROUP BY a.code", currency)
    return {r["code"]: r["total"] for r in rows}


async def trial_balance(conn: asyncpg.Connection) -> dict[str, int]:
    """Sum of all postings per currency: zero everywhere in a healthy ledger."""
    rows = await conn.fetch("SELECT currency, sum(amount)::bigint AS total FROM ledger_postings GROUP BY currency")
    return {r["currency"]: r["total"] for r in rows}


async def entries_for(conn: asyncpg.Connection, source_prefix: str) -> list[asyncpg.Record]:
    """Entries whose source starts with ``source_prefix``: where an amount came from."""
    return await conn.fetch("SELECT * FROM ledger_entries WHERE source_key LIKE $1 || '%' ORDER BY occurred_at",
                            like_literal(source_prefix))


# --------------------------------------------------------------------------- reports

@dataclass(frozen=True)
class RevenueRow:
    month: date
    plan: str
    currency: str
    revenue: int  # minor units credited to revenue:<plan> in that month (UTC)


async def revenue_by_plan_and_month(conn: asyncpg.Connection, *, since: datetime | None = None,
                                    until: datetime | None = None) -> list[RevenueRow]:
    """Gross subscription revenue per plan and calendar month (UTC), from the journal."""
    rows = await conn.fetch(
        "SELECT date_trunc('month', e.occurred_at AT TIME ZONE 'UTC')::date AS month,"
        "       split_part(a.code, ':', 2) AS plan, a.currency, -sum(p.amount)::bigint AS revenue"
        " FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id"
        " JOIN ledger_entries e ON e.id = p.entry_id"
        " WHERE a.kind = 'revenue' AND ($1::timestamptz IS NULL OR e.occurred_at >= $1)"
        "   AND ($2::timestamptz IS NULL OR e.occurred_at < $2)"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", since, until)
    return [RevenueRow(r["month"], r["plan"], r["currency"], r["revenue"]) for r in rows]


@dataclass(frozen=True)
class SubscriptionSnapshot:
    """What MRR and churn need of a subscription: its price per interval and when it was live."""

    plan: str
    currency: str
    unit_amount: int
    interval: str  # day, week, month, year (Stripe's)
    interval_count: int
    started_at: datetime
    ended_at: datetime | None = None
    quantity: int = 1


_MONTHS_PER = {"day": Fraction(12, 365), "week": Fraction(12, 52), "month": Fraction(1), "year": Fraction(12)}


def monthly_amount(sub: SubscriptionSnapshot) -> Fraction:
    """A subscription's price normalized to one month, exactly (an annual plan counts a twelfth)."""
    return Fraction(sub.unit_amount * sub.quantity) / (_MONTHS_PER[sub.interval] * sub.interval_count)


def mrr(subscriptions: Iterable[SubscriptionSnapshot], at: datetime) -> dict[tuple[str, str], int]:
    """Monthly recurring revenue at ``at`` per (plan, currency) in minor units.

    Summed exactly, then rounded once per group, half up (not Python's half-to-even), so a report does
    not depend on the order subscriptions were added.
    """
    totals: dict[tuple[str, str], Fraction] = {}
    for sub in subscriptions:
        if sub.started_at <= at and (sub.ended_at is None or sub.ended_at > at):
            key = (sub.plan, sub.currency)
            totals[key] = totals.get(key, Fraction(0)) + monthly_amount(sub)
    return {key: math.floor(value + Fraction(1, 2)) for key, value in sorted(totals.items())}


def churn_rate(subscriptions: Iterable[SubscriptionSnapshot], month: date) -> float:
    """Subscriber churn for a calendar month: ended during it / live at its start (0.0 with none live)."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    live = [s for s in subscriptions if s.started_at <= start and (s.ended_at is None or s.ended_at > start)]
    if not live:
        return 0.0
    ended = [s for s in live if s.ended_at is not None and s.ended_at < end]
    return len(ended) / len(live)
