"""How far behind the event pipeline is: metrics for the outbox relay and the consumer groups.

Two views of lag. Per event, when it is handled: the relay observes how long a row waited in the
outbox (``verseflow_outbox_publish_lag_seconds``) and each group how long after Redis received it the
event was handled (``verseflow_event_handling_lag_seconds``). And sampled on a timer by the event
worker (:func:`sample`), the backlog that per-event figures cannot show when nothing is handled at
all: unpublished outbox rows and the age of the oldest, and each group's entries not yet delivered
(XINFO GROUPS ``lag``) and delivered but unacknowledged (``pending``).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from redis.asyncio import Redis

from verseflow import metrics

PUBLISHED = metrics.counter("verseflow_outbox_published_total", "Outbox rows the relay appended to the stream.")
PUBLISH_LAG = metrics.histogram("verseflow_outbox_publish_lag_seconds",
                                "From an outbox row's commit to its publication on the stream.")
HANDLED = metrics.counter("verseflow_events_handled_total",
                          "Stream entries a consumer group finished, by outcome "
                          "(handled, duplicate, failed, dead_lettered).", ("group", "outcome"))
HANDLING_LAG = metrics.histogram("verseflow_event_handling_lag_seconds",
                                 "From an entry reaching the stream to its group handling it.", ("group",),
                                 buckets=metrics.SLOW_BUCKETS_S)
OUTBOX_PENDING = metrics.gauge("verseflow_outbox_pending_events", "Outbox rows not yet published.")
OUTBOX_OLDEST = metrics.gauge("verseflow_outbox_oldest_pending_age_seconds",
                              "Age of the oldest unpublished outbox row (0 when none).")
GROUP_LAG = metrics.gauge("verseflow_consumer_group_lag_events",
                          "Stream entries not yet delivered to the group.", ("group",))
GROUP_PENDING = metrics.gauge("verseflow_consumer_group_pending_events",
                              "Entries delivered to the group but not acknowledged.", ("group",))


async def sample(pool: asyncpg.Pool, redis: Redis, stream: str, groups: Sequence[str]) -> dict[str, float]:
    """Set the backlog gauges once; returns what it set (for logs and tests)."""
    row = await pool.fetchrow(
        """SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) AS oldest
           FROM outbox WHERE published_at IS NULL""")
    OUTBOX_PENDING.set(row["n"])
    OUTBOX_OLDEST.set(float(row["oldest"]))
    seen: dict[str, float] = {"outbox_pending": row["n"], "outbox_oldest_s": float(row["oldest"])}
    try:
        infos = await redis.xinfo_groups(stream)
    except Exception:  # noqa: BLE001 - no stream yet: no group has anything to do
        infos = []
    by_name = {_text(info["name"]): info for info in infos}
    for group in groups:
        info = by_name.get(group, {})
        lag = info.get("lag")
        GROUP_LAG.set(float(lag or 0), group=group)
        GROUP_PENDING.set(float(info.get("pending") or 0), group=group)
        seen[f"{group}.lag"] = float(lag or 0)
        seen[f"{group}.pending"] = float(info.get("pending") or 0)
    return seen


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
