"""A month's counted streams (``monthly_streams``) summed by PostgreSQL for the royalty run.

The month holds about one row per (listener, track) pair: 9.3 million rows for 10 million plays in the
bench. Reading them all into the run's process cost more than the whole computation, so each model's
sums are taken where the rows are, as parallel aggregates (``GROUP BY track_id`` or ``user_id``), and
only per-track or per-listener results cross the wire: tens of thousands of rows instead of millions.
``billing.royalties`` turns them into statement lines; ``royalties.compute`` is the same arithmetic
over rows in memory, and the tests hold the two to the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import numpy as np


@dataclass(frozen=True)
class TrackTotals:
    """Per track of the month: its artist, qualifying streams and distinct listeners (a listener has one
    row per track and month, so listeners are rows)."""

    tracks: list[str]
    artists: list[str]
    streams: np.ndarray
    listeners: np.ndarray

    def index(self) -> dict[str, int]:
        return {track: i for i, track in enumerate(self.tracks)}


async def track_totals(conn: asyncpg.Connection, month: object, *, timeout_s: float) -> TrackTotals:
    """Streams and listeners per track (the aggregate first, then the join: 20,000 tracks, not millions
    of rows, meet ``tracks``)."""
    rows = await conn.fetch(
        """SELECT s.track_id, t.artist_id, s.streams, s.listeners
           FROM (SELECT track_id, sum(streams)::int8 AS streams, count(*)::int8 AS listeners
                 FROM monthly_streams WHERE month = $1 GROUP BY track_id) AS s
           JOIN tracks t ON t.id = s.track_id""", month, timeout=timeout_s)
    return TrackTotals([str(r[0]) for r in rows], [str(r[1]) for r in rows],
                       np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows)),
                       np.fromiter((r[3] for r in rows), dtype=np.int64, count=len(rows)))


async def user_totals(conn: asyncpg.Connection, month: object, *, above: int = 0,
                      timeout_s: float) -> dict[str, int]:
    """Each listener's streams in the month, only for listeners with more than ``above``."""
    rows = await conn.fetch(
        """SELECT user_id, total FROM (SELECT user_id, sum(streams)::int8 AS total FROM monthly_streams
                                       WHERE month = $1 GROUP BY user_id) AS u WHERE total > $2""",
        month, above, timeout=timeout_s)
    return {str(r[0]): r[1] for r in rows}


async def capped_streams(conn: asyncpg.Connection, month: object, totals: dict[str, int], cap: int,
                         tracks: TrackTotals, *, timeout_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per track, the streams of the listeners over ``cap`` (``totals``: their month's streams) and the
    same streams each weighted ``cap / total`` (what the cap leaves of them)."""
    raw = np.zeros(len(tracks.tracks), dtype=np.int64)
    scaled = np.zeros(len(tracks.tracks), dtype=np.float64)
    if not totals:
        return raw, scaled
    rows = await conn.fetch(
        """SELECT m.track_id, sum(m.streams)::int8, sum(m.streams * ($4::float8 / c.total))
           FROM monthly_streams m JOIN unnest($2::uuid[], $3::float8[]) AS c (user_id, total) USING (user_id)
           WHERE m.month = $1 GROUP BY m.track_id""",
        month, list(totals), [float(t) for t in totals.values()], float(cap), timeout=timeout_s)
    position = tracks.index()
    for track_id, streams, weighted in rows:
        raw[position[str(track_id)]] = streams
        scaled[position[str(track_id)]] = weighted
    return raw, scaled


async def artist_listeners(conn: asyncpg.Connection, month: object, artist_ids: list[str], *,
                           timeout_s: float) -> dict[str, int]:
    """Distinct listeners in the month of each of ``artist_ids`` (exact; only for the artists whose
    per-track counts leave the answer open)."""
    if not artist_ids:
        return {}
    rows = await conn.fetch(
        """SELECT t.artist_id, count(DISTINCT m.user_id)::int8
           FROM tracks t JOIN monthly_streams m ON m.track_id = t.id AND m.month = $1
           WHERE t.artist_id = ANY($2::uuid[]) GROUP BY t.artist_id""", month, artist_ids, timeout=timeout_s)
    return {str(r[0]): r[1] for r in rows}


async def paid_weights(conn: asyncpg.Connection, month: object, paid: dict[str, int], totals: dict[str, int],
                       tracks: TrackTotals, *, timeout_s: float) -> np.ndarray:
    """Per track, each paying listener's money split over their own streams: the sum over listeners of
    ``paid × streams on the track / the listener's streams`` (user-centric)."""
    weights = np.zeros(len(tracks.tracks), dtype=np.float64)
    payers = [u for u in paid if paid[u] > 0 and totals.get(u, 0) > 0]
    if not payers:
        return weights
    rows = await conn.fetch(
        """SELECT m.track_id, sum(f.paid * m.streams / f.total)
           FROM monthly_streams m
           JOIN unnest($2::uuid[], $3::float8[], $4::float8[]) AS f (user_id, paid, total) USING (user_id)
           WHERE m.month = $1 GROUP BY m.track_id""",
        month, payers, [float(paid[u]) for u in payers], [float(totals[u]) for u in payers], timeout=timeout_s)
    position = tracks.index()
    for track_id, weight in rows:
        weights[position[str(track_id)]] = weight
    return weights
