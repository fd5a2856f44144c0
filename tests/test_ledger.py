"""The double-entry ledger (billing/ledger.py, verseflow/sql/0016_ledger.sql) on real PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import string
import uuid
from datetime import UTC, date, datetime

import asyncpg
import pytest

from billing import ledger
from verseflow.db import transaction


def fresh_currency() -> str:
    """A currency code no other test uses, so balances start at zero on the shared test database."""
    return "".join(random.choices(string.ascii_lowercase, k=3))


def at(year: int, month: int, day: int = 15) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


def test_an_unbalanced_entry_is_refused_before_the_database():
    with pytest.raises(ledger.UnbalancedEntry):
        ledger.JournalEntry("t:1", "x", "eur", (ledger.Posting("stripe_balance", 100),
                                                ledger.Posting("revenue:premium", -99)), at(2026, 1))
    with pytest.raises(ledger.UnbalancedEntry):
        ledger.JournalEntry("t:2", "x", "eur", (ledger.Posting("stripe_balance", 0),
                                                ledger.Posting("revenue:premium", 0)), at(2026, 1))
    with pytest.raises(ledger.InvalidInput):
        ledger.kind_of("stripe_balance:extra")
    with pytest.raises(ledger.InvalidInput):
        ledger.kind_of("revenue")


async def _raw_entry(conn: asyncpg.Connection, currency: str) -> tuple[uuid.UUID, int]:
    entry_id = uuid.uuid4()
    await conn.execute("INSERT INTO ledger_entries (id, source_key, description, occurred_at) VALUES ($1, $2, 'raw',"
                       " now())", entry_id, f"test:raw:{entry_id}")
    account = await conn.fetchval("INSERT INTO ledger_accounts (code, kind, currency) VALUES ('stripe_balance',"
                                  " 'asset', $1) ON CONFLICT (code, currency) DO UPDATE SET code = EXCLUDED.code"
                                  " RETURNING id", currency)
    return entry_id, account


async def test_the_database_refuses_an_unbalanced_entry_at_commit_not_before(pool):
    currency = fresh_currency()
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            async with conn.transaction():
                entry_id, account = await _raw_entry(conn, currency)
                await conn.execute("INSERT INTO ledger_postings (entry_id, account_id, currency, amount)"
                                   " VALUES ($1, $2, $3, 100), ($1, $2, $3, -99)", entry_id, account, currency)
                # still inside the transaction: the check is deferred, so nothing failed yet
                assert await conn.fetchval("SELECT count(*) FROM ledger_postings WHERE entry_id = $1", entry_id) == 2
        with pytest.raises(asyncpg.CheckViolationError, match="at least two"):
            async with conn.transaction():
                await _raw_entry(conn, currency)
        # postings written one statement at a time balance by commit: accepted
        async with conn.transaction():
            entry_id, account = await _raw_entry(conn, currency)
            await conn.execute("INSERT INTO ledger_postings (entry_id, account_id, currency, amount)"
                               " VALUES ($1, $2, $3, 250)", entry_id, account, currency)
            await conn.execute("INSERT INTO ledger_postings (entry_id, account_id, currency, amount)"
                               " VALUES ($1, $2, $3, -250)", entry_id, account, currency)
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE source_key LIKE 'test:raw:%'") == 1


async def test_postings_stay_in_their_accounts_currency_and_the_ledger_is_append_only(pool):
    currency = fresh_currency()
    entry = ledger.subscription_payment(source_key=f"test:{uuid.uuid4()}", plan="premium", currency=currency,
                                        amount=999, fee=59, occurred_at=at(2026, 3))
    async with transaction(pool) as conn:
        await ledger.post(conn, entry)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute("UPDATE ledger_postings SET amount = amount * 2 WHERE entry_id = $1", entry.id)
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute("DELETE FROM ledger_entries WHERE id = $1", entry.id)
        other = fresh_currency()
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            async with conn.transaction():
                entry_id, account = await _raw_entry(conn, currency)
                await conn.execute("INSERT INTO ledger_postings (entry_id, account_id, currency, amount)"
                                   " VALUES ($1, $2, $3, 5), ($1, $2, $4, -5)", entry_id, account, currency, other)


async def test_balances_follow_payments_fees_refunds_and_royalties_and_a_source_posts_once(pool):
    currency = fresh_currency()
    artist_a, artist_b = uuid.uuid4(), uuid.uuid4()
    entries = [
        ledger.subscription_payment(source_key=f"test:{currency}:in_1", plan="premium", currency=currency,
                                    amount=999, fee=59, occurred_at=at(2026, 1)),
        ledger.subscription_payment(source_key=f"test:{currency}:in_2", plan="family", currency=currency,
                                    amount=1599, fee=76, occurred_at=at(2026, 1)),
        ledger.refund(source_key=f"test:{currency}:re_1", currency=currency, amount=400, occurred_at=at(2026, 1, 20)),
        ledger.royalty_allocation(source_key=f"test:{currency}:royalties:2026-01", currency=currency,
                                  allocations={str(artist_a): 700, str(artist_b): 433}, occurred_at=at(2026, 2, 1)),
    ]
    async with transaction(pool) as conn:
        assert [await ledger.post(conn, e) for e in entries] == [True] * 4
    async with transaction(pool) as conn:  # a redelivered webhook posts the same source again
        replay = ledger.subscription_payment(source_key=f"test:{currency}:in_1", plan="premium", currency=currency,
                                             amount=999, fee=59, occurred_at=at(2026, 1))
        assert await ledger.post(conn, replay) is False
    async with pool.acquire() as conn:
        books = await ledger.balances(conn, currency)
        assert books == {
            "stripe_balance": 999 - 59 + 1599 - 76 - 400,
            "stripe_fees": 59 + 76,
            "revenue:premium": -999,
            "revenue:family": -1599,
            "refunds": 400,
            "royalty_pool": 1133,
            f"royalties_payable:{artist_a}": -700,
            f"royalties_payable:{artist_b}": -433,
        }
        assert sum(books.values()) == 0
        assert (await ledger.trial_balance(conn))[currency] == 0
        assert await ledger.balance(conn, "stripe_fees", currency) == 135
        assert [e["description"] for e in await ledger.entries_for(conn, f"test:{currency}:in_")] == [
            "subscription payment (premium)", "subscription payment (family)"]


async def test_revenue_by_plan_and_month_on_a_fixture(pool):
    currency = fresh_currency()
    fixture = [("premium", 999, at(2026, 1, 3)), ("premium", 999, at(2026, 1, 31)), ("family", 1599, at(2026, 1, 9)),
               ("premium", 999, at(2026, 2, 1)), ("family", 1599, at(2026, 2, 28)), ("family", 1599, at(2026, 3, 1))]
    async with transaction(pool) as conn:
        for index, (plan, amount, when) in enumerate(fixture):
            await ledger.post(conn, ledger.subscription_payment(
                source_key=f"test:{currency}:rev:{index}", plan=plan, currency=currency, amount=amount, fee=30,
                occurred_at=when))
    async with pool.acquire() as conn:
        rows = [r for r in await ledger.revenue_by_plan_and_month(conn, since=at(2026, 1, 1), until=at(2026, 3, 1))
                if r.currency == currency]
    assert [(r.month, r.plan, r.revenue) for r in rows] == [
        (date(2026, 1, 1), "family", 1599), (date(2026, 1, 1), "premium", 1998),
        (date(2026, 2, 1), "family", 1599), (date(2026, 2, 1), "premium", 999),
    ]  # 2026-03-01 12:00 is after `until`


def test_mrr_and_churn_on_a_fixture():
    subs = [
        ledger.SubscriptionSnapshot("premium", "eur", 999, "month", 1, at(2026, 1, 1)),
        ledger.SubscriptionSnapshot("premium", "eur", 999, "month", 1, at(2026, 1, 1), ended_at=at(2026, 2, 10)),
        ledger.SubscriptionSnapshot("premium", "eur", 9990, "year", 1, at(2026, 1, 5)),  # 832.5 a month
        ledger.SubscriptionSnapshot("family", "eur", 1599, "month", 1, at(2026, 2, 20)),
        ledger.SubscriptionSnapshot("family", "usd", 1799, "month", 1, at(2025, 12, 1), ended_at=at(2026, 1, 2)),
    ]
    assert ledger.mrr(subs, at(2026, 2, 1)) == {("premium", "eur"): 999 + 999 + 833}
    assert ledger.mrr(subs, at(2026, 3, 1)) == {("family", "eur"): 1599, ("premium", "eur"): 999 + 833}
    assert ledger.churn_rate(subs, date(2026, 2, 1)) == pytest.approx(1 / 3)
    assert ledger.churn_rate(subs, date(2026, 1, 1)) == 1.0  # the only one live on Jan 1 ended on Jan 2


async def test_an_account_another_transaction_creates_while_an_entry_is_posted_still_gets_its_posting(pool):
    """``post`` is one statement whose snapshot predates an account committed while it waits: those postings
    are booked by a second statement, so the entry is whole and balances."""
    currency = fresh_currency()
    entry = ledger.subscription_payment(source_key=f"test:{currency}:race", plan="premium", currency=currency,
                                        amount=999, fee=59, occurred_at=at(2026, 4))
    async with pool.acquire() as other:
        creating = other.transaction()
        await creating.start()
        await other.execute("INSERT INTO ledger_accounts (code, kind, currency) VALUES ('revenue:premium', 'revenue',"
                            " $1)", currency)
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()

            async def post() -> bool:
                async with conn.transaction():
                    return await ledger.post(conn, entry)

            posting = asyncio.create_task(post())
            for _ in range(500):  # until its INSERT of the account waits for the other transaction
                if await pool.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("post never waited for the account being created")
            await creating.commit()
            assert await posting is True
    async with pool.acquire() as conn:
        assert await ledger.balances(conn, currency) == {"stripe_balance": 999 - 59, "stripe_fees": 59,
                                                         "revenue:premium": -999}
        assert await conn.fetchval("SELECT count(*) FROM ledger_postings WHERE entry_id = $1", entry.id) == 4
