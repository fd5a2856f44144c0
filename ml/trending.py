"""Trending tracks: growth of unique listeners against the track's own previous window.

For a window W (24 hours or 7 days) ending now, each track's unique listeners in (now − W, now] are
compared with those in (now − 2W, now − W], from the hourly ``track_listens`` rows the interaction
consumer writes (a complete or partial play; a skip is no listen). The score is

    (current − previous) / sqrt(previous + 1)

the growth measured in units of the previous count's Poisson noise: ten new listeners mean more to a
track that had none than to one that had a thousand, and a track holding steady scores zero. Counting
listeners, not plays, makes it robust to one listener replaying a track; ``rec_trending_min_listeners``
keeps a track heard by one or two people out. Only growing, published tracks are listed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from verseflow.errors import InvalidInput
from verseflow.settings import Settings

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}


async def trending(pool: asyncpg.Pool, settings: Settings, *, window: str, genre: str | None, limit: int,
                   now: datetime | None = None) -> list[dict[str, Any]]:
    """The fastest-growing published tracks of ``window``, optionally of one genre, with their counts."""
    if window not in WINDOWS:
        raise InvalidInput(f"window is one of {', '.join(WINDOWS)}")
    if limit > settings.rec_limit_max:
        raise InvalidInput(f"limit is at most {settings.rec_limit_max}")
    end = now or datetime.now(UTC)
    start = end - WINDOWS[window]
    rows = await pool.fetch(
        """WITH counts AS (
               SELECT track_id, count(DISTINCT user_id) FILTER (WHERE hour > $2) AS current,
                      count(DISTINCT user_id) FILTER (WHERE hour <= $2) AS previous
               FROM track_listens WHERE hour > $2 - ($3 - $2) AND hour <= $3 GROUP BY track_id)
           SELECT t.id, t.title, t.artist_id, a.name AS artist_name, t.album_id, t.genre, t.duration_s,
                  c.current, c.previous, (c.current - c.previous) / sqrt(c.previous + 1) AS score
           FROM counts c JOIN tracks t ON t.id = c.track_id JOIN artists a ON a.id = t.artist_id
           WHERE c.current >= $4 AND c.current > c.previous AND t.status = 'ready'
             AND ($5::text IS NULL OR t.genre = $5)
           ORDER BY score DESC, c.current DESC, t.id LIMIT $1""",
        limit, start, end, settings.rec_trending_min_listeners, genre)
    return [{"track": {k: r[k] for k in ("id", "title", "artist_id", "artist_name", "album_id", "genre",
                                         "duration_s")},
             "listeners": r["current"], "previous_listeners": r["previous"], "score": round(float(r["score"]), 6)}
            for r in rows]


async def prune_listens(pool: asyncpg.Pool, settings: Settings) -> int:
    """Drop hourly listeners older than the retention (two 7-day windows fit inside it)."""
    status = await pool.execute("DELETE FROM track_listens WHERE hour < now() - make_interval(days => $1)",
                                settings.rec_listens_retention_days)
    return int(status.split()[-1])
