"""Billing throughput: webhook events handled per second, and the monthly royalty run's time.

    .venv/bin/python -m bench.billing_bench [--subscriptions 300] [--concurrency 8]
                                            [--plays 1000000,3000000,10000000] [--trigger-max 1000000]
                                            [--part all|webhooks|royalties] [--smoke]

What runs: a fresh database on the PostgreSQL server of ``VERSEFLOW_DATABASE_URL`` (default: the local
test server) and the local Stripe server (``python -m stripelocal``) as a process of its own.

1. Webhooks: twice ``--subscriptions`` listeners subscribe through the SDK (customer, card, subscription:
   11 events each). Every event the server emitted is then signed as Stripe signs it and handed to
   ``billing.subscriptions.handle_webhook`` with ``--concurrency`` in flight: the whole path
   (signature, de-duplication, the API reads, state, ledger, outbox, commit; event types VerseFlow does
   not act on are answered after the signature check). Half the listeners' events go through the current
   path (an event's own object applied when it is newer than the stored state; only the invoice's fee
   read from the API), the other half through the previous one (``billing_webhook_refetch``: every
   subscription and invoice re-read from the API): the baseline, in the same run, in alternating chunks.
   Reported for each: events per second over all events and over the ones VerseFlow acts on
   (subscription, invoice and refund events), the API reads per event acted on (the local server's
   request counts), and the ratio of the two rates; then a second delivery of every event (duplicates).
   Checked: the ledger balances and holds one entry per paid invoice. Target: ≥ 500 events/s acted on.
2. Royalties, at each size of ``--plays`` (a month each; default 1, 3 and 10 million): plays (a start and
   a complete event each, Zipf-like over tracks) from 50,000 listeners over 20,000 tracks of 1,000
   artists. Months up to ``--trigger-max`` plays (default 1,000,000) are inserted as play events through
   the plays table, whose trigger counts them (the API's path, timed); larger months get the same counts
   written straight into ``monthly_streams`` (what the trigger leaves; the run reads nothing else), which
   makes 10 million plays a minutes' set-up instead of the trigger's ~20 minutes. Then ``run_month`` is
   timed under every model (pro-rata, user-centric, artist-centric): the month's sums taken by PostgreSQL,
   the split, the stored lines. Baseline in the same run: the run before (every counted row read into the
   process, then ``royalties.compute``; not stored). Printed too: the growth between sizes, and the load
   average with each figure (the machine is shared). Target: ≤ 60 s for 10 million plays.

The database is dropped at the end; the exit status is 0 when everything was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import asyncpg
import httpx

from bench import harness
from bench.harness import ROOT, admin, create_database, free_port, say
from billing import ledger, royalties, subscriptions
from stripelocal import sign
from verseflow.db import create_pool
from verseflow.settings import Settings

DATABASE = f"vf_bench_billing_{secrets.token_hex(4)}"
TARGET_EVENTS_PER_S = 500
TARGET_ROYALTY_S = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.billing_bench")
    parser.add_argument("--subscriptions", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--plays", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1_000_000, 3_000_000, 10_000_000],
                        help="comma-separated sizes, one month each (default 1000000,3000000,10000000)")
    parser.add_argument("--trigger-max", type=int, default=1_000_000,
                        help="months of up to this many plays are inserted as play events through the counting "
                             "trigger; larger ones get their counts written directly (default 1000000)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that everything is measured")
    parser.add_argument("--part", choices=("all", "webhooks", "royalties"), default="all",
                        help="measure only the webhooks or only the royalty run (default: both)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.subscriptions, args.plays, args.trigger_max = 10, [10_000, 20_000], 10_000
    admin_url = harness.admin_url()
    api_key = "sk_test_bench_" + secrets.token_hex(8)
    port = free_port()
    stripe_process = subprocess.Popen([sys.executable, "-m", "stripelocal", "--port", str(port)], cwd=ROOT,
                                      env={**os.environ, "STRIPELOCAL_API_KEY": api_key},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    settings = Settings(database_url=urlunparse(urlparse(admin_url)._replace(path="/" + DATABASE)),
                        redis_url="unused://", stripe_secret_key=api_key, stripe_api_base=f"http://127.0.0.1:{port}",
                        stripe_webhook_secret="whsec_bench_" + secrets.token_hex(8), stripe_max_network_retries=0)
    try:
        _wait_up(settings.stripe_api_base)
        asyncio.run(create_database(admin_url, DATABASE, settings))
        args.stripe_pid = stripe_process.pid
        report = asyncio.run(_run(settings, args))
    finally:
        stripe_process.terminate()
        stripe_process.wait(timeout=30)
        asyncio.run(admin(admin_url, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
    for line in report:
        print(line)
    return 0


def _wait_up(base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/_local/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the local Stripe server did not start")
        time.sleep(0.1)


class _CountingConnection(asyncpg.Connection):
    """Counts the statements sent to PostgreSQL (each a round trip; BEGIN, COMMIT and the pool's reset of a
    released connection included: they go through ``execute``)."""

    statements = 0


def _counted(name: str) -> Any:
    method = getattr(asyncpg.Connection, name)

    async def counted(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
        _CountingConnection.statements += 1
        return await method(self, *args, **kwargs)

    return counted


for _name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
    setattr(_CountingConnection, _name, _counted(_name))


async def _run(settings: Settings, args: argparse.Namespace) -> list[str]:
    pool = await create_pool(settings, min_size=2, max_size=args.concurrency + 2,
                             connection_class=_CountingConnection)
    try:
        lines = await _webhooks(pool, settings, args) if args.part in ("all", "webhooks") else []
        if args.part in ("all", "royalties"):
            lines += await _royalties(pool, args)
        return lines
    finally:
        await subscriptions.close_stripe_clients()
        await pool.close()


async def _webhooks(pool, settings: Settings, args: argparse.Namespace) -> list[str]:
    say(f"subscribing {2 * args.subscriptions} listeners through the local Stripe server "
        f"({args.subscriptions} for each handling path)")
    client = subscriptions.stripe_client(settings)
    prices = await subscriptions.ensure_catalog(pool, client, settings)
    users = [uuid.uuid4() for _ in range(2 * args.subscriptions)]
    await pool.executemany("INSERT INTO users (id, email, password_hash, display_name, role) VALUES"
                           " ($1, $2, 'x', 'bench', 'listener')", [(u, f"{u.hex}@bench.test") for u in users])
    gate = asyncio.Semaphore(args.concurrency)
    customers: list[str] = []

    async def subscribe(user: uuid.UUID) -> None:
        async with gate:
            customer = await client.v1.customers.create_async(params={"metadata": {"user_id": str(user)}})
            customers.append(customer.id)
            method = await client.v1.payment_methods.attach_async("pm_card_visa", params={"customer": customer.id})
            await client.v1.customers.update_async(
                customer.id, params={"invoice_settings": {"default_payment_method": method.id}})
            await pool.execute("INSERT INTO billing_customers (user_id, stripe_customer_id) VALUES ($1, $2)",
                               user, customer.id)
            await client.v1.subscriptions.create_async(params={
                "customer": customer.id, "items": [{"price": prices["premium"].price_id}],
                "metadata": {"user_id": str(user)}})

    await asyncio.gather(*(subscribe(u) for u in users))
    events = list(reversed(await _all_events(settings)))  # oldest first, as Stripe would send them
    # Each customer's events go through one path, in one of two chunks per path; the chunks alternate
    # (baseline, new, baseline, new) so that a change in the machine's load falls on both paths.
    chunk_of = {c: (i % 2, i // 2 % 2) for i, c in enumerate(customers)}  # (path, half)
    chunks: dict[tuple[int, int], list[dict]] = {key: [] for key in ((0, 0), (1, 0), (0, 1), (1, 1))}
    for event in events:
        obj = event["data"]["object"]
        customer = obj["id"] if obj.get("object") == "customer" else obj.get("customer")
        chunks[chunk_of.get(customer, (0, 0))].append(event)  # the catalogue's few events: the first chunk
    paths = {0: settings.model_copy(update={"billing_webhook_refetch": True}), 1: settings}
    secret = settings.stripe_webhook_secret.get_secret_value()
    results: list[str] = []

    async def handle(path_settings: Settings, body: bytes, signature: str) -> None:
        async with gate:
            results.append(await subscriptions.handle_webhook(pool, path_settings, body, signature))

    def signed(batch: list[dict]) -> list[tuple[bytes, str]]:
        """Each event's body and ``Stripe-Signature``, as Stripe would send them (made before any measurement)."""
        return [(payload.encode(), sign(payload, secret)) for payload in (json.dumps(e, indent=2) for e in batch)]

    async def deliver(path_settings: Settings, signed: list[tuple[bytes, str]]) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(handle(path_settings, body, sig) for body, sig in signed))
        return time.perf_counter() - started

    say(f"handling {len(events)} webhook events, {args.concurrency} at a time: half through the previous path "
        "(every object re-read from the API), half through the current one, in alternating chunks")
    signed_chunks = {key: signed(batch) for key, batch in chunks.items()}
    elapsed = {0: 0.0, 1: 0.0}
    reads = {0: 0, 1: 0}
    statements = {0: 0, 1: 0}
    cpu = {0: [0.0, 0.0], 1: [0.0, 0.0]}  # CPU seconds: this process (handler and SDK), the local Stripe server
    for path, half in chunks:
        before = await _api_reads(settings)
        own, server = time.process_time(), _cpu_s(args.stripe_pid)
        sent = _CountingConnection.statements
        elapsed[path] += await deliver(paths[path], signed_chunks[(path, half)])
        statements[path] += _CountingConnection.statements - sent
        cpu[path][0] += time.process_time() - own
        cpu[path][1] += _cpu_s(args.stripe_pid) - server
        reads[path] += await _api_reads(settings) - before
    counts = {path: sum(len(chunks[(path, h)]) for h in (0, 1)) for path in (0, 1)}
    acted = {path: sum(1 for h in (0, 1) for e in chunks[(path, h)] if e["type"] in subscriptions.HANDLED_EVENTS)
             for path in (0, 1)}
    results.clear()
    replay_s = await deliver(settings, signed(events))
    assert set(results) <= {"duplicate", "ignored"}, set(results)
    async with pool.acquire() as conn:
        balance = (await ledger.trial_balance(conn)).get(settings.billing_currency, 0)
        booked = len(await ledger.entries_for(conn, "stripe:invoice.paid:"))
    paid = sum(1 for e in events if e["type"] == "invoice.paid")
    assert balance == 0 and booked == paid, (balance, booked, paid)
    rate = {path: acted[path] / elapsed[path] for path in (0, 1)}
    return [
        f"webhook events handled: {counts[1]} in {elapsed[1]:.2f} s = {counts[1] / elapsed[1]:.0f} events/s "
        f"(concurrency {args.concurrency}; {acted[1]} of them acted on: {rate[1]:.0f}/s; "
        f"{reads[1] / acted[1]:.2f} API reads and {statements[1] / acted[1]:.2f} PostgreSQL round trips per event "
        f"acted on)",
        f"webhook baseline, every object re-read from the API (the path before issue 9's throughput work, "
        f"VERSEFLOW_BILLING_WEBHOOK_REFETCH=true), same run: {counts[0]} in {elapsed[0]:.2f} s = "
        f"{counts[0] / elapsed[0]:.0f} events/s ({acted[0]} acted on: {rate[0]:.0f}/s; "
        f"{reads[0] / acted[0]:.2f} API reads and {statements[0] / acted[0]:.2f} PostgreSQL round trips per event "
        f"acted on)",
        f"webhook ratio, events acted on per second, current / baseline: x{rate[1] / rate[0]:.2f}",
        f"webhook CPU per event (all events of the path; ms): handler process {1000 * cpu[1][0] / counts[1]:.2f}, "
        f"local Stripe server {1000 * cpu[1][1] / counts[1]:.2f}; baseline {1000 * cpu[0][0] / counts[0]:.2f} and "
        f"{1000 * cpu[0][1] / counts[0]:.2f} (less sensitive to the machine's load than the rates)",
        f"webhook duplicates: {len(events)} in {replay_s:.2f} s = {len(events) / replay_s:.0f} events/s",
        f"ledger: balanced, {booked} invoice payments booked once each",
        f"target (≥ {TARGET_EVENTS_PER_S} events/s through signature, dedupe, state, ledger and outbox, judged on the "
        f"events acted on): {'met' if rate[1] >= TARGET_EVENTS_PER_S else 'NOT met'}"
        f" ({counts[1] / elapsed[1]:.0f}/s over all events)",
    ]


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _api_reads(settings: Settings) -> int:
    """API reads the local Stripe server has answered so far (``GET /_local/requests``; lists included)."""
    async with httpx.AsyncClient(base_url=settings.stripe_api_base, timeout=30) as http:
        counts = (await http.get("/_local/requests")).json()
    return sum(n for key, n in counts.items() if key.startswith("GET /v1/") and not key.startswith("GET /v1/events"))


async def _all_events(settings: Settings) -> list[dict]:
    """Every event, newest first, as the API returns them (raw JSON: the bodies Stripe would send)."""
    headers = {"Authorization": f"Bearer {settings.stripe_secret_key.get_secret_value()}"}
    events: list[dict] = []
    async with httpx.AsyncClient(base_url=settings.stripe_api_base, headers=headers, timeout=30) as http:
        after = None
        while True:
            page = (await http.get("/v1/events", params={"limit": 100, **({"starting_after": after} if after
                                                                              else {})})).json()
            events += page["data"]
            if not page["has_more"]:
                return events
            after = page["data"][-1]["id"]


# Plays of one month: each a start and a complete (two events), Zipf-like over tracks; inserted through the
# plays table, whose statement trigger (0026) counts them (the API's path).
_PLAYS = """
    INSERT INTO plays (play_id, user_id, track_id, event, position_ms, created_at)
    SELECT p.play_id, f.id, t.id, e.event, e.position_ms, p.at + e.after
    FROM (SELECT gen_random_uuid() AS play_id, (g::bigint * 7919) % 50000 AS fan,
                 floor(power(random(), 3) * 20000)::int AS track,
                 $1::timestamptz + (random() * ($2::timestamptz - $1::timestamptz - interval '1 hour')) AS at
          FROM generate_series(1, {plays}) AS g) AS p
    CROSS JOIN (VALUES ('start', 0::bigint, interval '0'), ('complete', 180000::bigint, interval '3 minutes'))
         AS e (event, position_ms, after)
    JOIN bench_fans f ON f.n = p.fan
    JOIN bench_tracks t ON t.n = p.track"""

# The same plays' counts, written straight into monthly_streams: what the trigger leaves after them (one
# row per listener and track with its qualifying plays), without the play events the run never reads.
_COUNTS = """
    INSERT INTO monthly_streams (month, user_id, track_id, streams)
    SELECT $1::date, f.id, t.id, p.streams
    FROM (SELECT (g::bigint * 7919) % 50000 AS fan, floor(power(random(), 3) * 20000)::int AS track,
                 count(*)::int AS streams
          FROM generate_series(1, {plays}) AS g GROUP BY 1, 2) AS p
    JOIN bench_fans f ON f.n = p.fan
    JOIN bench_tracks t ON t.n = p.track
    ORDER BY f.id, t.id"""

MODELS = ("pro_rata", "user_centric", "artist_centric")


async def _royalties(pool, args: argparse.Namespace) -> list[str]:
    """The royalty run at each size of ``--plays`` (a month each), under every model, against the run before
    (every counted row read into the process, then ``royalties.compute``), with the growth between sizes."""
    async with pool.acquire() as conn:
        await _royalty_catalogue(conn)
    lines: list[str] = []
    runs: dict[int, dict[str, float]] = {}
    for index, plays in enumerate(args.plays):
        month = f"2026-{index + 1:02d}"
        start, end = royalties.month_bounds(month)
        async with pool.acquire() as conn:
            if plays <= args.trigger_max:
                say(f"inserting {plays:,} plays ({2 * plays:,} events) for {month} through the counting trigger")
                took = await _timed(conn.execute(_PLAYS.format(plays=int(plays)), start, end, timeout=7200))
                lines.append(f"plays ingestion, {plays:,} plays: {took:.1f} s as play events through the counting "
                             f"trigger (the API's path; load average {_load()})")
            else:
                say(f"writing the counts of {plays:,} plays for {month} into monthly_streams")
                took = await _timed(_write_counts(conn, start.date(), plays))
                lines.append(f"plays ingestion, {plays:,} plays: {took:.1f} s writing the month's counts directly "
                             f"(what the trigger leaves after them; larger than --trigger-max; load average {_load()})")
            await conn.execute("ANALYZE monthly_streams", timeout=600)
            rows = await conn.fetchval("SELECT count(*) FROM monthly_streams WHERE month = $1", start.date())
        runs[plays] = {}
        for model in MODELS:
            say(f"royalty run ({model}, {plays:,} plays, {rows:,} listener-track rows)")
            started = time.perf_counter()
            result = await royalties.run_month(pool, month=month, model=model, currency="eur", share_bp=7000,
                                               pool_override=10_000_000, post_to_ledger=False, timeout_s=7200)
            runs[plays][model] = elapsed = time.perf_counter() - started
            total = await pool.fetchval("SELECT sum(amount) FROM royalty_lines WHERE run_id = $1", result.run_id)
            assert total == result.pool, (total, result.pool)
            verdict = ("met" if elapsed <= TARGET_ROYALTY_S else "NOT met") if plays >= 10_000_000 else \
                "not judged below 10,000,000 plays"
            lines.append(f"royalty run over {plays:,} plays ({model}): {elapsed:.1f} s, {result.lines:,} statement "
                         f"lines summing exactly to the pool ({rows:,} listener-track rows; load average {_load()}); "
                         f"target (≤ {TARGET_ROYALTY_S:.0f} s for 10,000,000): {verdict}")
        lines += await _previous_run(pool, month, plays, runs[plays])
    lines += _growth(runs)
    return lines


async def _write_counts(conn, month, plays: int) -> None:
    """The counts in one statement; referential checks off for it (``session_replication_role``, the
    bench's superuser): every id comes from the bench's own listeners and tracks."""
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica; SET LOCAL work_mem = '256MB'")
        await conn.execute(_COUNTS.format(plays=int(plays)), month, timeout=7200)


async def _previous_run(pool, month: str, plays: int, current: dict[str, float]) -> list[str]:
    """The baseline: the run as it was before this bench's change, every counted row of the month read into
    the process (``qualifying_streams``) and split there (``compute``); nothing stored."""
    async with pool.acquire() as conn:
        started = time.perf_counter()
        table = await royalties.qualifying_streams(conn, month, timeout_s=7200)
        read = time.perf_counter() - started
    took = {}
    for model in ("pro_rata", "artist_centric"):
        started = time.perf_counter()
        royalties.compute(model, 10_000_000, table)
        took[model] = read + time.perf_counter() - started
    return [f"royalty baseline over {plays:,} plays, every row read into the process then split there (the run "
            f"before; not stored): read {read:.1f} s, pro_rata {took['pro_rata']:.1f} s (baseline / current run: x"
            f"{took['pro_rata'] / current['pro_rata']:.1f}), artist_centric {took['artist_centric']:.1f} s "
            f"(x{took['artist_centric'] / current['artist_centric']:.1f}; load average {_load()})"]


def _growth(runs: dict[int, dict[str, float]]) -> list[str]:
    """The run's time between consecutive sizes, against the plays' growth."""
    sizes = sorted(runs)
    return [f"royalty run growth {small:,} → {large:,} plays (x{large / small:.1f}): "
            + ", ".join(f"{model} x{runs[large][model] / runs[small][model]:.1f}" for model in MODELS)
            for small, large in zip(sizes, sizes[1:], strict=False)]


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


async def _royalty_catalogue(conn) -> None:
    """50,000 listeners, 1,000 artists, 20,000 tracks, numbered for the play generator (in tables, not
    temporary ones: the pool's connections all see them)."""
    await conn.execute("""
        INSERT INTO users (id, email, password_hash, display_name, role)
        SELECT gen_random_uuid(), 'royal' || i || '@bench.test', 'x', 'fan', 'listener'
        FROM generate_series(1, 50000) AS i""")
    await conn.execute("""
        INSERT INTO artists (id, owner_id, name)
        SELECT gen_random_uuid(), (SELECT id FROM users LIMIT 1), 'Artist ' || i FROM generate_series(1, 1000) i""")
    await conn.execute("""
        INSERT INTO tracks (id, artist_id, title)
        SELECT gen_random_uuid(), a.id, 'Track ' || i
        FROM generate_series(1, 20000) AS i
        JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM artists) a ON a.n = i % 1000""")
    await conn.execute("""
        CREATE TABLE bench_fans AS SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM users
        WHERE email LIKE 'royal%';
        CREATE TABLE bench_tracks AS SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM tracks""")


async def _timed(awaitable) -> float:
    started = time.perf_counter()
    await awaitable
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
