"""Monthly royalty statements: a pool of money split over the month's qualifying streams, per track.

Three models, chosen by the operator (``VERSEFLOW_ROYALTY_MODEL``):
- ``pro_rata``: every qualifying stream weighs the same; a track gets pool × its streams / all streams.
- ``user_centric``: each subscriber's own contribution is split over what that subscriber streamed
  (a user's money follows their listening); money of subscribers who streamed nothing is split
  pro-rata, so the pool is always paid out whole.
- ``artist_centric`` (Deezer, 2023): streams of artists with at least 1,000 streams from at least 500
  distinct listeners in the month count double, and each user counts for at most 1,000 streams (a user
  with n > 1,000 streams gives each stream a weight of 1,000 / n). Deezer's further rules (boosting
  streams the listener searched for, removing noise tracks) need signals VerseFlow does not record.

A qualifying stream is one play (``play_id``) that completed or reached 30 seconds. Amounts are
apportioned by the largest-remainder method over statement lines (one per track): floors first, then
one cent each to the largest remainders (ties by track id), so lines always sum exactly to the pool.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg
import numpy as np

from billing import ledger
from billing import royalty_aggregates as aggregates
from verseflow.errors import Forbidden, InvalidInput, NotFound
from verseflow.events.retention import delete_in_batches
from verseflow.settings import Settings

MODELS = ("pro_rata", "user_centric", "artist_centric")
QUALIFYING_MS = 30_000  # the plays trigger of 0026_monthly_streams.sql applies it (30000 there)
BOOST_MIN_STREAMS = 1_000
BOOST_MIN_LISTENERS = 500
USER_STREAM_CAP = 1_000


@dataclass(frozen=True)
class Streams:
    """Qualifying streams of one user on one track in the month."""

    user_id: str
    track_id: str
    artist_id: str
    count: int


@dataclass(frozen=True)
class Line:
    artist_id: str
    track_id: str
    streams: int
    amount: int


def apportion(pool: int, weights: Sequence[float] | np.ndarray, keys: Sequence[str]) -> list[int]:
    """Largest-remainder (Hamilton) apportionment of ``pool`` minor units by ``weights``; sums to ``pool``.

    Integer weights are apportioned exactly; fractional ones in float64, each share rounded to a millionth of
    a minor unit first (the sum is exact either way): the same money summed in another order (PostgreSQL's
    parallel aggregate against numpy, ``compute_in_database`` against ``compute``) differs in the last bits,
    and that must not move a cent between two tracks whose remainders are equal. Ties between equal
    remainders go to the smaller key, so a re-run gives the same cents.
    """
    if pool < 0:
        raise InvalidInput("the pool cannot be negative")
    w = np.asarray(weights)
    if len(w) == 0 or pool == 0:
        return [0] * len(w)
    if np.issubdtype(w.dtype, np.integer):
        total = int(w.sum())
        if total <= 0:
            raise InvalidInput("nothing to apportion the pool over")
        products = [pool * int(x) for x in w]  # Python ints: exact at any size
        floors = np.array([p // total for p in products], dtype=np.int64)
        remainders = np.array([p % total for p in products], dtype=np.float64) / total
    else:
        total_f = float(w.sum())
        if total_f <= 0:
            raise InvalidInput("nothing to apportion the pool over")
        exact = np.round(w.astype(np.float64) * (pool / total_f), 6)
        floors = np.floor(exact).astype(np.int64)
        remainders = exact - floors
    left = pool - int(floors.sum())
    if left:
        order = sorted(range(len(w)), key=lambda i: (-remainders[i], keys[i]))[:left]
        floors[order] += 1
    return [int(x) for x in floors]


@dataclass(frozen=True)
class StreamTable:
    """A month's qualifying streams as arrays: row i is ``counts[i]`` streams of user ``users[user[i]]`` on
    track ``tracks[track[i]]``, whose artist is ``artists[track[i]]``.

    Millions of (user, track) rows are summed with numpy, not Python objects: the run's time is the
    database's read, not the interpreter's loop."""

    users: list[str]
    tracks: list[str]
    artists: list[str]  # per track
    user: np.ndarray
    track: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence]) -> StreamTable:  # (user, track, artist, count) rows
        users: dict[object, int] = {}
        tracks: dict[object, int] = {}
        artists: list[object] = []
        user_index, track_index, counts = [], [], []
        for user_id, track_id, artist_id, count in rows:
            if count <= 0:
                continue
            if (t := tracks.setdefault(track_id, len(tracks))) == len(artists):
                artists.append(artist_id)
            user_index.append(users.setdefault(user_id, len(users)))
            track_index.append(t)
            counts.append(count)
        return cls([str(u) for u in users], [str(t) for t in tracks], [str(a) for a in artists],
                   np.asarray(user_index, dtype=np.int64), np.asarray(track_index, dtype=np.int64),
                   np.asarray(counts, dtype=np.int64))

    @classmethod
    def from_streams(cls, streams: Iterable[Streams]) -> StreamTable:
        return cls.from_rows((s.user_id, s.track_id, s.artist_id, s.count) for s in streams)

    def __iter__(self) -> Iterator[Streams]:
        for u, t, n in zip(self.user.tolist(), self.track.tolist(), self.counts.tolist(), strict=True):
            yield Streams(self.users[u], self.tracks[t], self.artists[t], n)

    def __len__(self) -> int:
        return len(self.counts)


def _lines(pool: int, weights: np.ndarray, tracks: Sequence[str], artists: Sequence[str],
           per_track: np.ndarray) -> list[Line]:
    """One line per track with weight, in track id order (the tie-break apportion relies on)."""
    order = sorted((i for i in range(len(tracks)) if weights[i] > 0), key=tracks.__getitem__)
    keys = [tracks[i] for i in order]
    amounts = apportion(pool, weights[order], keys)
    return [Line(artists[i], tracks[i], int(per_track[i]), a) for i, a in zip(order, amounts, strict=True)]


def _boosted(artist_streams: np.ndarray, artist_listeners: np.ndarray) -> np.ndarray:
    """Artist-centric: which artists' streams count double (Deezer's thresholds)."""
    return (artist_streams >= BOOST_MIN_STREAMS) & (artist_listeners >= BOOST_MIN_LISTENERS)


def _with_silent_money(direct: np.ndarray, silent: float, per_track: np.ndarray) -> np.ndarray:
    """User-centric: the money of payers who streamed nothing, added pro-rata to what the others directed."""
    return direct + silent * per_track / per_track.sum()


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise InvalidInput(f"model must be one of {', '.join(MODELS)}")


def _paying(contributions: Mapping[str, int] | None, pool: int) -> dict[str, int]:
    """User-centric: each subscriber's positive contribution; together they must make the pool."""
    money = {u: int(v) for u, v in (contributions or {}).items() if v > 0}
    if sum(money.values()) != pool:
        raise InvalidInput("user-centric contributions must add up to the pool")
    return money


def compute(model: str, pool: int, streams: Iterable[Streams] | StreamTable,
            contributions: Mapping[str, int] | None = None) -> list[Line]:
    """Statement lines (per track) for one month under ``model``; amounts sum to ``pool``.

    ``contributions`` (user-centric only) is what each subscriber paid into the pool, in minor units.
    """
    _check_model(model)
    table = streams if isinstance(streams, StreamTable) else StreamTable.from_streams(streams)
    if not len(table) or pool == 0:
        return []
    n_tracks, n_users = len(table.tracks), len(table.users)
    per_track = np.bincount(table.track, weights=table.counts, minlength=n_tracks).astype(np.int64)
    per_user = np.bincount(table.user, weights=table.counts, minlength=n_users)
    if model == "pro_rata":
        return _lines(pool, per_track, table.tracks, table.artists, per_track)
    if model == "artist_centric":
        artist_ids, artist_of_track = np.unique(np.asarray(table.artists), return_inverse=True)
        artist = artist_of_track[table.track]
        artist_streams = np.bincount(artist, weights=table.counts, minlength=len(artist_ids))
        pairs = np.unique(artist * np.int64(n_users) + table.user)  # distinct (artist, listener)
        listeners = np.bincount(pairs // n_users, minlength=len(artist_ids))
        cap = np.minimum(1.0, USER_STREAM_CAP / per_user[table.user])
        boost = np.where(_boosted(artist_streams, listeners)[artist], 2.0, 1.0)
        weights = np.bincount(table.track, weights=table.counts * cap * boost, minlength=n_tracks)
        return _lines(pool, weights, table.tracks, table.artists, per_track)
    # user_centric
    money = _paying(contributions, pool)
    paid = np.array([money.get(u, 0) for u in table.users], dtype=np.float64)
    weights = np.bincount(table.track, weights=paid[table.user] * table.counts / per_user[table.user],
                          minlength=n_tracks)
    listening = set(table.users)
    silent = sum(v for u, v in money.items() if u not in listening)
    return _lines(pool, _with_silent_money(weights, silent, per_track), table.tracks, table.artists, per_track)


async def compute_in_database(conn: asyncpg.Connection, model: str, pool: int, month: str,
                              contributions: Mapping[str, int] | None = None, *,
                              listener_totals: dict[str, int] | None = None,
                              timeout_s: float = 600.0) -> list[Line]:
    """``compute``'s lines for a month's counted streams, from sums PostgreSQL takes where the rows are
    (``royalty_aggregates``): per-track and per-listener totals cross the wire, not a row per (listener,
    track) pair, so the run grows with the month's rows only inside the database's parallel scans.
    ``listener_totals`` (user-centric): each listener's streams, when the caller has read them already."""
    _check_model(model)
    day = as_date(month)
    tracks = await aggregates.track_totals(conn, day, timeout_s=timeout_s)
    if not tracks.tracks or pool == 0:
        return []
    if model == "pro_rata":
        weights = tracks.streams
    elif model == "artist_centric":
        weights = await _artist_centric_weights(conn, day, tracks, timeout_s=timeout_s)
    else:
        money = _paying(contributions, pool)
        totals = listener_totals if listener_totals is not None else \
            await aggregates.user_totals(conn, day, timeout_s=timeout_s)
        direct = await aggregates.paid_weights(conn, day, money, totals, tracks, timeout_s=timeout_s)
        silent = sum(v for u, v in money.items() if u not in totals)
        weights = _with_silent_money(direct, silent, tracks.streams)
    return _lines(pool, weights, tracks.tracks, tracks.artists, tracks.streams)


async def _artist_centric_weights(conn: asyncpg.Connection, day: date, tracks: aggregates.TrackTotals, *,
                                  timeout_s: float) -> np.ndarray:
    """Per track: streams, minus what the per-user cap takes from heavy listeners, doubled for boosted
    artists. An artist's listeners are at least its most-heard track's and at most the sum over its
    tracks; only artists those bounds leave undecided are counted exactly (a distinct count over every
    row of the month would be the run's most expensive query)."""
    artist_ids, artist_of_track = np.unique(np.asarray(tracks.artists), return_inverse=True)
    n = len(artist_ids)
    artist_streams = np.bincount(artist_of_track, weights=tracks.streams, minlength=n)
    at_least = np.zeros(n, dtype=np.int64)
    np.maximum.at(at_least, artist_of_track, tracks.listeners)
    at_most = np.bincount(artist_of_track, weights=tracks.listeners, minlength=n).astype(np.int64)
    listeners = np.where(at_least >= BOOST_MIN_LISTENERS, at_least, at_most)
    undecided = np.flatnonzero((artist_streams >= BOOST_MIN_STREAMS) & (at_least < BOOST_MIN_LISTENERS)
                               & (at_most >= BOOST_MIN_LISTENERS))
    exact = await aggregates.artist_listeners(conn, day, [str(artist_ids[i]) for i in undecided],
                                              timeout_s=timeout_s)
    for i in undecided:
        listeners[i] = exact.get(str(artist_ids[i]), 0)
    heavy = await aggregates.user_totals(conn, day, above=USER_STREAM_CAP, timeout_s=timeout_s)
    raw, scaled = await aggregates.capped_streams(conn, day, heavy, USER_STREAM_CAP, tracks, timeout_s=timeout_s)
    boost = np.where(_boosted(artist_streams, listeners)[artist_of_track], 2.0, 1.0)
    return boost * ((tracks.streams - raw) + scaled)


# --------------------------------------------------------------------------- repository and run

def month_bounds(month: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput("month must be YYYY-MM") from None
    end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


async def qualifying_streams(conn: asyncpg.Connection, month: str, *, timeout_s: float = 600.0) -> StreamTable:
    """The month's qualifying plays per (user, track), as the plays trigger counted them
    (``0026_monthly_streams.sql``: a play counts once, in the month it completed or reached 30 s).

    Millions of rows come as one binary COPY of three integers each (the user's and the track's positions
    in two short id lists), read straight into numpy: no Python object per row. The monthly run does not
    read them (``compute_in_database`` sums them where they are); this is ``compute``'s input, for tests
    and the bench's baseline."""
    start, _ = month_bounds(month)
    day = start.date()
    users = [r[0] for r in await conn.fetch(
        "SELECT DISTINCT user_id FROM monthly_streams WHERE month = $1 ORDER BY user_id", day, timeout=timeout_s)]
    tracks = await conn.fetch(
        """SELECT t.id, t.artist_id FROM tracks t
           WHERE t.id IN (SELECT DISTINCT track_id FROM monthly_streams WHERE month = $1) ORDER BY t.id""",
        day, timeout=timeout_s)
    rows = await _copy_integers(conn, """
        SELECT (us.i - 1)::int4, (ts.i - 1)::int4, m.streams::int4 FROM monthly_streams m
        JOIN unnest($2::uuid[]) WITH ORDINALITY AS us (user_id, i) USING (user_id)
        JOIN unnest($3::uuid[]) WITH ORDINALITY AS ts (track_id, i) USING (track_id)
        WHERE m.month = $1""", day, users, [r["id"] for r in tracks], columns=3, timeout_s=timeout_s)
    return StreamTable([str(u) for u in users], [str(r["id"]) for r in tracks], [str(r["artist_id"]) for r in tracks],
                       rows[:, 0], rows[:, 1], rows[:, 2])


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


async def _copy_integers(conn: asyncpg.Connection, query: str, *args: object, columns: int,
                         timeout_s: float) -> np.ndarray:
    """The rows of ``query`` (``columns`` non-null int4 each) as an int64 array, via COPY's binary format:
    a header, then per row a field count and, per field, a length and big-endian bytes; a -1 trailer."""
    buffer = io.BytesIO()
    await conn.copy_from_query(query, *args, output=buffer, format="binary", timeout=timeout_s)
    raw = buffer.getbuffer()
    if bytes(raw[:11]) != _COPY_SIGNATURE:
        raise RuntimeError("not a PostgreSQL binary COPY stream")
    offset = 19 + int.from_bytes(raw[15:19], "big")  # past the header and its extension area
    layout = np.dtype([("fields", ">i2")] + [(f, ">i4") for i in range(columns) for f in (f"len{i}", f"v{i}")])
    count = (len(raw) - offset - 2) // layout.itemsize
    records = np.frombuffer(raw, dtype=layout, offset=offset, count=count)
    if count and (np.any(records["fields"] != columns) or any(np.any(records[f"len{i}"] != 4) for i in range(columns))):
        raise RuntimeError("unexpected row layout in the binary COPY stream")
    return np.stack([records[f"v{i}"].astype(np.int64) for i in range(columns)], axis=1) if count else \
        np.zeros((0, columns), dtype=np.int64)


_QUALIFIED_BEFORE = """
DELETE FROM qualified_plays WHERE (user_id, play_id) IN (
    SELECT user_id, play_id FROM qualified_plays
    WHERE month < (date_trunc('month', now() AT TIME ZONE 'UTC') - $2 * interval '1 month')::date
    LIMIT $1 FOR UPDATE SKIP LOCKED)"""


async def prune_qualified_plays(pool: asyncpg.Pool, settings: Settings) -> int:
    """Forget which plays of old months were counted: their counts stay in ``monthly_streams``; only the
    de-duplication of late events needs the rows, for ``qualified_plays_retention_months``."""
    return await delete_in_batches(pool, _QUALIFIED_BEFORE, settings.qualified_plays_retention_months,
                                   batch=settings.prune_batch_size)


async def month_pool(conn: asyncpg.Connection, month: str, currency: str, share_bp: int) -> tuple[int, dict[str, int]]:
    """The pool (``share_bp`` basis points of the month's subscription revenue net of refunds) and each
    paying user's part of it (for user-centric), from the ledger."""
    start, end = month_bounds(month)
    rows = await conn.fetch(
        """SELECT bc.user_id, -sum(p.amount)::bigint AS paid
           FROM ledger_entries e JOIN ledger_postings p ON p.entry_id = e.id
           JOIN ledger_accounts a ON a.id = p.account_id
           LEFT JOIN billing_customers bc ON bc.stripe_customer_id = e.metadata->>'customer'
           WHERE a.kind = 'revenue' AND a.currency = $3 AND e.occurred_at >= $1 AND e.occurred_at < $2
           GROUP BY bc.user_id""", start, end, currency)
    refunds = await conn.fetchval(
        """SELECT coalesce(sum(p.amount), 0)::bigint FROM ledger_entries e
           JOIN ledger_postings p ON p.entry_id = e.id JOIN ledger_accounts a ON a.id = p.account_id
           WHERE a.code = 'refunds' AND a.currency = $3 AND e.occurred_at >= $1 AND e.occurred_at < $2""",
        start, end, currency)
    paid = {str(r["user_id"]): r["paid"] for r in rows if r["user_id"] is not None and r["paid"] > 0}
    revenue = max(0, sum(r["paid"] for r in rows) - refunds)
    pool = revenue * share_bp // 10_000
    users = sorted(paid)
    parts = apportion(pool, [paid[u] for u in users], users) if users and pool else []
    return pool, dict(zip(users, parts, strict=True))


@dataclass(frozen=True)
class RunResult:
    run_id: uuid.UUID
    month: str
    model: str
    currency: str
    pool: int
    lines: int
    created: bool  # False: the month was already run under this model (nothing changed)


async def run_month(pool: asyncpg.Pool, *, month: str, model: str, currency: str, share_bp: int,
                    pool_override: int | None = None, post_to_ledger: bool = True,
                    timeout_s: float = 600.0, work_mem_mb: int = 64) -> RunResult:
    """Compute and store a month's statements once; a re-run returns the stored run unchanged.

    The run, its lines and (for the operator's model) the ledger entry owing each artist commit together.
    """
    _check_model(model)
    start, end = month_bounds(month)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('royalties:' || $1 || $2 || $3))",
                           month, model, currency)
        existing = await conn.fetchrow("SELECT id, pool FROM royalty_runs WHERE month = $1 AND model = $2"
                                       " AND currency = $3", start.date(), model, currency)
        if existing:
            count = await conn.fetchval("SELECT count(*) FROM royalty_lines WHERE run_id = $1", existing["id"])
            return RunResult(existing["id"], month, model, currency, existing["pool"], count, False)
        computed_pool, contributions = await month_pool(conn, month, currency, share_bp)
        amount = computed_pool if pool_override is None else pool_override
        if pool_override is not None and contributions:
            users = sorted(contributions)
            contributions = dict(zip(users, apportion(amount, [contributions[u] for u in users], users),
                                     strict=True))
        await conn.execute("SELECT set_config('work_mem', $1, true)", f"{work_mem_mb}MB")
        totals = None
        if model == "user_centric" and not contributions:  # nobody paid in the month: an equal share each
            totals = await aggregates.user_totals(conn, start.date(), timeout_s=timeout_s)
            listeners = sorted(totals)
            contributions = dict(zip(listeners, apportion(amount, [1] * len(listeners), listeners), strict=True)) \
                if listeners else {}
        lines = await compute_in_database(conn, model, amount, month, contributions, listener_totals=totals,
                                          timeout_s=timeout_s)
        run_id = uuid.uuid4()
        await conn.execute("INSERT INTO royalty_runs (id, month, model, currency, pool) VALUES ($1, $2, $3, $4, $5)",
                           run_id, start.date(), model, currency, amount)
        await conn.copy_records_to_table(
            "royalty_lines", columns=["run_id", "artist_id", "track_id", "streams", "amount"],
            records=[(run_id, uuid.UUID(line.artist_id), uuid.UUID(line.track_id), line.streams, line.amount)
                     for line in lines])
        if post_to_ledger and lines:
            per_artist: dict[str, int] = {}
            for line in lines:
                per_artist[line.artist_id] = per_artist.get(line.artist_id, 0) + line.amount
            entry = ledger.royalty_allocation(source_key=f"royalties:{month}:{currency}", currency=currency,
                                              allocations=per_artist, occurred_at=end,
                                              metadata={"run": str(run_id), "model": model})
            await ledger.post(conn, entry)
        return RunResult(run_id, month, model, currency, amount, len(lines), True)


async def statements(pool: asyncpg.Pool, *, owner_id: uuid.UUID, is_admin: bool,
                     artist_id: uuid.UUID) -> list[dict]:
    """An artist's statements (one per run, newest first, lines per track), for its owner or an admin."""
    owner = await pool.fetchval("SELECT owner_id FROM artists WHERE id = $1", artist_id)
    if owner is None:
        raise NotFound("artist not found")
    if owner != owner_id and not is_admin:
        raise Forbidden("only the artist's owner sees its statements")
    rows = await pool.fetch(
        """SELECT r.id AS run_id, r.month, r.model, r.currency, l.track_id, t.title, l.streams, l.amount
           FROM royalty_lines l JOIN royalty_runs r ON r.id = l.run_id JOIN tracks t ON t.id = l.track_id
           WHERE l.artist_id = $1 ORDER BY r.month DESC, r.model, t.title, l.track_id""", artist_id)
    result: dict[uuid.UUID, dict] = {}
    for r in rows:
        statement = result.setdefault(r["run_id"], {"run_id": r["run_id"], "month": r["month"].strftime("%Y-%m"),
                                                    "model": r["model"], "currency": r["currency"], "total": 0,
                                                    "lines": []})
        statement["lines"].append({"track_id": r["track_id"], "title": r["title"], "streams": r["streams"],
                                   "amount": r["amount"]})
        statement["total"] += r["amount"]
    return list(result.values())


def statements_csv(items: list[dict]) -> str:
    """The statements as CSV: one row per line, amounts in minor units."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["month", "model", "currency", "track_id", "title", "streams", "amount_minor"])
    for statement in items:
        for line in statement["lines"]:
            writer.writerow([statement["month"], statement["model"], statement["currency"], line["track_id"],
                             line["title"], line["streams"], line["amount"]])
    return out.getvalue()


def as_date(month: str) -> date:
    return month_bounds(month)[0].date()
