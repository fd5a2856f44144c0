"""The interaction table, kept by the ``ml.interactions`` consumer group from play, library and playlist events.

One row per (listener, track) in ``interactions`` (``0018_interactions.sql``) holds decayed positive and
negative evidence, counters and whether the track is saved; ``play_signals`` remembers how each play has
been classified so far (``ml/signals.py`` has the rules), so a play that changes class later (a start
first taken for a skip that completes after all) corrects its row by the difference. Handlers run inside
the consumer's transaction, so a redelivered event changes nothing twice.

Event → effect:
- ``play.recorded`` (every start, progress, complete): the play's furthest position moves on; a complete
  classifies it; a start ends the listener's other open plays (skip, partial, or dropped when the same track).
  Plays nobody ends (the listener went quiet) are ended by ``end_stale_plays`` on the event worker's timer.
  A play that becomes a listen (complete or partial) also marks (track, hour, listener) in ``track_listens``.
- ``track.saved`` / ``track.unsaved``: the row's ``saved`` flag.
- ``playlist.track_added``: ``rec_playlist_add_weight`` of positive evidence for whoever added it.
- ``playlist.followed``: ``rec_follow_weight`` for each track of the playlist, for the follower.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from ml.signals import Evidence, PlayState, ended_state, evidence
from verseflow.db import transaction
from verseflow.events.consumer import Handlers
from verseflow.events.outbox import Event
from verseflow.settings import Settings

GROUP = "ml.interactions"

# Decay the row to the event's time, then add: value(T) = value * 0.5^((T - decayed_at) / half-life).
_ADD = """
INSERT INTO interactions (user_id, track_id, positive, negative, decayed_at, completes, partials, skips,
                          playlist_adds)
VALUES ($1, $2, greatest($3::float8, 0), greatest($4::float8, 0), $5, greatest($6::int, 0), greatest($7::int, 0),
        greatest($8::int, 0), greatest($9::int, 0))
ON CONFLICT (user_id, track_id) DO UPDATE SET
    positive = greatest(0, interactions.positive * power(0.5, greatest(0, extract(epoch FROM
                   EXCLUDED.decayed_at - interactions.decayed_at)) / 86400 / $10::float8) + $3),
    negative = greatest(0, interactions.negative * power(0.5, greatest(0, extract(epoch FROM
                   EXCLUDED.decayed_at - interactions.decayed_at)) / 86400 / $10::float8) + $4),
    decayed_at = greatest(interactions.decayed_at, EXCLUDED.decayed_at),
    completes = greatest(0, interactions.completes + $6),
    partials = greatest(0, interactions.partials + $7),
    skips = greatest(0, interactions.skips + $8),
    playlist_adds = interactions.playlist_adds + $9,
    updated_at = now()
"""

_LISTENS = ("complete", "partial")  # what counts as having listened (trending's unique listeners)
_COUNTERS: dict[PlayState, tuple[int, int, int]] = {  # (completes, partials, skips)
    "complete": (1, 0, 0), "partial": (0, 1, 0), "skip": (0, 0, 1), "open": (0, 0, 0), "dropped": (0, 0, 0)}


async def add_evidence(conn: asyncpg.Connection, settings: Settings, user_id: uuid.UUID, track_id: uuid.UUID,
                       at: datetime, change: Evidence, *, counters: tuple[int, int, int] = (0, 0, 0),
                       playlist_adds: int = 0) -> None:
    """Add (or, with negative amounts, take back) evidence on the (user, track) row, decayed to ``at``."""
    await conn.execute(_ADD, user_id, track_id, change.positive, change.negative, at, *counters, playlist_adds,
                       settings.rec_half_life_days)


async def _reclassify(conn: asyncpg.Connection, settings: Settings, play: asyncpg.Record, state: PlayState,
                      max_position_ms: int, at: datetime) -> None:
    """Move a play to ``state`` and correct its interaction row by the difference in evidence."""
    duration = await conn.fetchval("SELECT duration_s FROM tracks WHERE id = $1", play["track_id"])
    new = evidence(state, max_position_ms, duration, settings)
    old_counts, new_counts = _COUNTERS[play["state"]], _COUNTERS[state]
    await conn.execute(
        """UPDATE play_signals SET state = $3, max_position_ms = $4, positive = $5, negative = $6
           WHERE user_id = $1 AND play_id = $2""",
        play["user_id"], play["play_id"], state, max_position_ms, new.positive, new.negative)
    if state in _LISTENS and play["state"] not in _LISTENS:
        await conn.execute("INSERT INTO track_listens (track_id, hour, user_id) "
                           "VALUES ($1, date_trunc('hour', $2::timestamptz), $3) ON CONFLICT DO NOTHING",
                           play["track_id"], at, play["user_id"])
    change = Evidence(new.positive - play["positive"], new.negative - play["negative"])
    counters = tuple(n - o for n, o in zip(new_counts, old_counts, strict=True))
    if change != Evidence() or any(counters):
        await add_evidence(conn, settings, play["user_id"], play["track_id"], at, change, counters=counters)


async def on_play(conn: asyncpg.Connection, event: Event, settings: Settings) -> None:
    payload = event.payload
    user_id, track_id = uuid.UUID(payload["user_id"]), uuid.UUID(payload["track_id"])
    play_id, position = uuid.UUID(payload["play_id"]), int(payload["position_ms"])
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tracks WHERE id = $1)", track_id):
        return  # deleted since: nothing to recommend from it
    at = event.occurred_at
    play = await conn.fetchrow(
        """INSERT INTO play_signals (user_id, play_id, track_id, state, max_position_ms, started_at)
           VALUES ($1, $2, $3, 'open', $4, $5)
           ON CONFLICT (user_id, play_id) DO UPDATE SET max_position_ms = play_signals.max_position_ms
           RETURNING *, (xmax = 0) AS inserted""",
        user_id, play_id, track_id, position, at)
    if play["inserted"]:
        await _end_other_plays(conn, settings, user_id, play_id, track_id, at)
    furthest = max(play["max_position_ms"], position)
    if payload["event"] == "complete":
        if play["state"] != "complete":
            await _reclassify(conn, settings, play, "complete", furthest, at)
    elif play["state"] in ("skip", "partial"):
        # Order is not guaranteed: progress that arrives after the play was ended may lift a skip to a partial.
        duration = await conn.fetchval("SELECT duration_s FROM tracks WHERE id = $1", track_id)
        await _reclassify(conn, settings, play, ended_state(furthest, duration, settings), furthest, at)
    elif furthest != play["max_position_ms"]:
        await conn.execute("UPDATE play_signals SET max_position_ms = $3 WHERE user_id = $1 AND play_id = $2",
                           user_id, play_id, furthest)


async def _end_other_plays(conn: asyncpg.Connection, settings: Settings, user_id: uuid.UUID,
                           play_id: uuid.UUID, track_id: uuid.UUID, at: datetime) -> None:
    """A new play ends the listener's open ones where they stopped."""
    others = await conn.fetch(
        """SELECT p.*, t.duration_s FROM play_signals p JOIN tracks t ON t.id = p.track_id
           WHERE p.user_id = $1 AND p.state = 'open' AND p.play_id <> $2 FOR UPDATE OF p""",
        user_id, play_id)
    for other in others:
        state: PlayState = ("dropped" if other["track_id"] == track_id
                            else ended_state(other["max_position_ms"], other["duration_s"], settings))
        await _reclassify(conn, settings, other, state, other["max_position_ms"], at)


async def end_stale_plays(pool: asyncpg.Pool, settings: Settings, *, batch: int = 1000) -> int:
    """End plays left open longer than their track plus ``rec_open_play_grace_s`` (the listener never
    played anything again), where they stopped; returns how many. Plays another sweep holds are skipped."""
    async with transaction(pool) as conn:
        stale = await conn.fetch(
            """SELECT p.*, t.duration_s FROM play_signals p JOIN tracks t ON t.id = p.track_id
               WHERE p.state = 'open' AND p.started_at < now() - make_interval(secs => coalesce(t.duration_s, 0) + $1)
               LIMIT $2 FOR UPDATE OF p SKIP LOCKED""",
            settings.rec_open_play_grace_s, batch)
        now = datetime.now(UTC)
        for play in stale:
            state = ended_state(play["max_position_ms"], play["duration_s"], settings)
            await _reclassify(conn, settings, play, state, play["max_position_ms"], now)
    return len(stale)


async def on_saved(conn: asyncpg.Connection, event: Event, saved: bool) -> None:
    user_id, track_id = uuid.UUID(event.payload["user_id"]), uuid.UUID(event.payload["track_id"])
    await conn.execute(
        """INSERT INTO interactions (user_id, track_id, decayed_at, saved)
           SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM tracks WHERE id = $2)
           ON CONFLICT (user_id, track_id) DO UPDATE SET saved = $4, updated_at = now()""",
        user_id, track_id, event.occurred_at, saved)


async def on_playlist_add(conn: asyncpg.Connection, event: Event, settings: Settings) -> None:
    user_id, track_id = uuid.UUID(event.payload["by"]), uuid.UUID(event.payload["track_id"])
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tracks WHERE id = $1)", track_id):
        return
    await add_evidence(conn, settings, user_id, track_id, event.occurred_at,
                       Evidence(positive=settings.rec_playlist_add_weight), playlist_adds=1)


_FOLLOW = """
INSERT INTO interactions (user_id, track_id, positive, decayed_at, follows)
SELECT $1, track_id, $3::float8, $4, 1
FROM (SELECT DISTINCT track_id FROM playlist_tracks WHERE playlist_id = $2 ORDER BY track_id LIMIT $6) held
ON CONFLICT (user_id, track_id) DO UPDATE SET
    positive = interactions.positive * power(0.5, greatest(0, extract(epoch FROM
                   EXCLUDED.decayed_at - interactions.decayed_at)) / 86400 / $5::float8) + EXCLUDED.positive,
    negative = interactions.negative * power(0.5, greatest(0, extract(epoch FROM
                   EXCLUDED.decayed_at - interactions.decayed_at)) / 86400 / $5::float8),
    decayed_at = greatest(interactions.decayed_at, EXCLUDED.decayed_at),
    follows = interactions.follows + 1,
    updated_at = now()
"""


async def on_follow(conn: asyncpg.Connection, event: Event, settings: Settings) -> None:
    """Following a playlist is weak evidence for each of its tracks (up to ``rec_follow_max_tracks``);
    unfollowing takes nothing back: the evidence decays like the rest."""
    await conn.execute(_FOLLOW, uuid.UUID(event.payload["user_id"]), uuid.UUID(event.payload["playlist_id"]),
                       settings.rec_follow_weight, event.occurred_at, settings.rec_half_life_days,
                       settings.rec_follow_max_tracks)


def handlers(settings: Settings) -> Handlers:
    """The ``ml.interactions`` group's handlers (``actors/event_worker.py`` composes the group)."""
    async def play(conn: asyncpg.Connection, event: Event) -> None:
        await on_play(conn, event, settings)

    async def saved(conn: asyncpg.Connection, event: Event) -> None:
        await on_saved(conn, event, True)

    async def unsaved(conn: asyncpg.Connection, event: Event) -> None:
        await on_saved(conn, event, False)

    async def playlist_add(conn: asyncpg.Connection, event: Event) -> None:
        await on_playlist_add(conn, event, settings)

    async def follow(conn: asyncpg.Connection, event: Event) -> None:
        await on_follow(conn, event, settings)

    return {"play.recorded": [play], "track.saved": [saved], "track.unsaved": [unsaved],
            "playlist.track_added": [playlist_add], "playlist.followed": [follow]}
