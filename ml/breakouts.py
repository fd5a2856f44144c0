"""Breakout artists: whose unique listeners grow fastest against their own baseline.

For a window W (24 hours or 7 days) ending now, an artist's unique listeners (over all their tracks,
from the hourly ``track_listens`` rows: a listener counts once however often they replay) in the
current window are compared with the mean of the ``rec_breakout_baseline_windows`` windows before it:

    score = (current − baseline) / sqrt(baseline + 1)

growth in units of the baseline's Poisson noise, as trending tracks are scored (``ml/trending.py``), so
an artist going from 2 to 40 listeners outranks one going from 10,000 to 10,100, and one holding steady
scores zero. Artists below ``rec_breakout_min_listeners`` in the current window are left out (two friends
are not a breakout). Every item carries the numbers behind it: the count of each window, oldest first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from verseflow.errors import InvalidInput
from verseflow.settings import Settings

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}


async def breakouts(pool: asyncpg.Pool, settings: Settings, *, window: str, limit: int,
                    now: datetime | None = None) -> list[dict[str, Any]]:
    """The fastest-growing artists of ``window`` with their listener counts per window."""
    if window not in WINDOWS:
        raise InvalidInput(f"window is one of {', '.join(WINDOWS)}")
    if limit > settings.rec_limit_max:
        raise InvalidInput(f"limit is at most {settings.rec_limit_max}")
    baseline_windows = settings.rec_breakout_baseline_windows
    if WINDOWS[window] * (baseline_windows + 1) > timedelta(days=settings.rec_listens_retention_days):
        raise InvalidInput("the baseline of that window reaches past the listens kept")
    end = now or datetime.now(UTC)
    rows = await pool.fetch(
        """WITH per_window AS (
               SELECT t.artist_id,
                      floor(extract(epoch FROM $2 - l.hour) / $3)::int AS age,  -- 0: the current window
                      count(DISTINCT l.user_id) AS listeners
               FROM track_listens l JOIN tracks t ON t.id = l.track_id
               WHERE l.hour > $2 - make_interval(secs => $3 * ($4 + 1)) AND l.hour <= $2
               GROUP BY t.artist_id, age),
           scored AS (
               SELECT artist_id, coalesce(sum(listeners) FILTER (WHERE age = 0), 0) AS current,
                      coalesce(sum(listeners) FILTER (WHERE age > 0), 0)::float8 / $4 AS baseline,
                      array_agg(age) AS ages, array_agg(listeners) AS counts
               FROM per_window GROUP BY artist_id)
           SELECT s.*, a.name, (s.current - s.baseline) / sqrt(s.baseline + 1) AS score
           FROM scored s JOIN artists a ON a.id = s.artist_id
           WHERE s.current >= $5 AND s.current > s.baseline
           ORDER BY score DESC, s.current DESC, a.id LIMIT $1""",
        limit, end, WINDOWS[window].total_seconds(), baseline_windows, settings.rec_breakout_min_listeners)
    items = []
    for r in rows:
        per_age = dict(zip(r["ages"], r["counts"], strict=True))
        items.append({"artist": {"id": r["artist_id"], "name": r["name"]}, "listeners": r["current"],
                      "baseline_listeners": round(r["baseline"], 3),
                      "windows": [per_age.get(age, 0) for age in range(baseline_windows, -1, -1)],
                      "score": round(float(r["score"]), 6)})
    return items
