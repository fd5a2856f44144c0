"""PostgreSQL for the audio pipeline: landmark postings, job rows, publication and plays.

Landmark hashes are unsigned 32-bit; PostgreSQL's ``int`` is signed, so they are stored as the same
32 bits read as signed (``view(np.int32)``) and read back the same way: equality, which is all a
lookup needs, is preserved.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import numpy as np

from audio.fingerprint import Landmarks, Postings


async def put_landmarks(conn: asyncpg.Connection, track_id: uuid.UUID, landmarks: Landmarks) -> int:
    """Replace a track's postings (a re-run publishes the same set once)."""
    await conn.execute("DELETE FROM fingerprint_landmarks WHERE track_id = $1", track_id)
    hashes = landmarks.hashes.astype(np.uint32).view(np.int32).tolist()
    times = np.rint(landmarks.times).astype(np.int32).tolist()
    records = [(h, track_id, t) for h, t in zip(hashes, times, strict=True)]
    await conn.copy_records_to_table("fingerprint_landmarks", records=records, columns=("hash", "track_id", "t"))
    return len(records)


async def lookup_landmarks(pool: asyncpg.Pool, hashes: np.ndarray, *, exclude: uuid.UUID | None = None) -> Postings:
    """Every stored (hash, track, time) for ``hashes``, optionally leaving one track out."""
    wanted = np.unique(hashes.astype(np.uint32)).view(np.int32).tolist()
    rows = await pool.fetch(
        """SELECT l.hash, l.track_id, l.t FROM fingerprint_landmarks l
           WHERE l.hash = ANY($1::int[]) AND l.track_id IS DISTINCT FROM $2""",
        wanted, exclude,
    )
    if not rows:
        return Postings(np.zeros(0, np.uint32), np.zeros(0, object), np.zeros(0, np.float64))
    hashes_out = np.fromiter((r[0] for r in rows), np.int32, len(rows)).view(np.uint32)
    tracks = np.empty(len(rows), dtype=object)
    tracks[:] = [str(r[1]) for r in rows]
    times = np.fromiter((r[2] for r in rows), np.float64, len(rows))
    return Postings(hashes_out, tracks, times)


async def begin_attempt(conn: asyncpg.Connection, track_id: uuid.UUID) -> asyncpg.Record | None:
    """Count one more attempt at a track's job; None when the job is already finished."""
    return await conn.fetchrow(
        """UPDATE track_jobs j SET attempts = attempts + 1, state = 'running', updated_at = now()
           FROM tracks t
           WHERE j.track_id = $1 AND t.id = j.track_id AND j.state IN ('queued', 'running')
             AND t.status = 'processing'
           RETURNING j.attempts, t.source_key, t.uploaded_by""",
        track_id,
    )


async def record_progress(conn: asyncpg.Connection, track_id: uuid.UUID, stage: str, progress: float) -> None:
    await conn.execute(
        """UPDATE track_jobs SET stage = $2, progress = GREATEST(progress, $3), updated_at = now()
           WHERE track_id = $1 AND state = 'running'""",
        track_id, stage, progress,
    )


async def mark_published(conn: asyncpg.Connection, track_id: uuid.UUID, *, media_prefix: str,
                         analysis: dict[str, Any], media: dict[str, Any], genre: str | None,
                         duration_s: float) -> bool:
    """Flip a processing track to ready; False if another run got there first (nothing changes)."""
    row = await conn.fetchrow(
        """UPDATE tracks SET status = 'ready', media_prefix = $2, analysis = $3, media = $4,
                  genre = COALESCE(genre, $5), duration_s = $6, error = NULL,
                  published_at = now(), updated_at = now()
           WHERE id = $1 AND status = 'processing' RETURNING id""",
        track_id, media_prefix, analysis, media, genre, duration_s,
    )
    return row is not None


async def finish_job(conn: asyncpg.Connection, track_id: uuid.UUID, state: str, timings: dict[str, float]) -> None:
    await conn.execute(
        """UPDATE track_jobs SET state = $2, progress = CASE WHEN $2 = 'succeeded' THEN 1 ELSE progress END,
                  timings = $3, updated_at = now() WHERE track_id = $1""",
        track_id, state, timings,
    )


async def mark_failed(conn: asyncpg.Connection, track_id: uuid.UUID, error: dict[str, Any]) -> bool:
    row = await conn.fetchrow(
        """UPDATE tracks SET status = 'failed', error = $2, updated_at = now()
           WHERE id = $1 AND status = 'processing' RETURNING id""",
        track_id, error,
    )
    return row is not None


async def replace_matches(conn: asyncpg.Connection, track_id: uuid.UUID, matches: list[dict[str, Any]]) -> None:
    await conn.execute("DELETE FROM track_matches WHERE track_id = $1", track_id)
    await conn.executemany(
        """INSERT INTO track_matches (track_id, matched_track_id, offset_s, score, speed)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        [(track_id, uuid.UUID(m["track_id"]), m["offset_s"], m["score"], m["speed"]) for m in matches],
    )


async def matches_of(pool: asyncpg.Pool, track_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT m.matched_track_id AS track_id, t.title, a.name AS artist_name, m.offset_s, m.score, m.speed
           FROM track_matches m JOIN tracks t ON t.id = m.matched_track_id JOIN artists a ON a.id = t.artist_id
           WHERE m.track_id = $1 ORDER BY m.score DESC""",
        track_id,
    )
    return [dict(r) for r in rows]


async def job_of(pool: asyncpg.Pool, track_id: uuid.UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        "SELECT state, attempts, stage, progress, timings, updated_at FROM track_jobs WHERE track_id = $1", track_id)
    return dict(row) if row else None


async def open_jobs(pool: asyncpg.Pool) -> list[uuid.UUID]:
    """Tracks whose job has not finished: what a restarted cluster must resume."""
    rows = await pool.fetch("SELECT track_id FROM track_jobs WHERE state IN ('queued', 'running')")
    return [r["track_id"] for r in rows]


async def insert_play(conn: asyncpg.Connection, who: uuid.UUID, play: dict[str, Any]) -> bool:
    row = await conn.fetchrow(
        """INSERT INTO plays (play_id, user_id, track_id, event, position_ms, rung)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id""",
        play["play_id"], who, play["track_id"], play["event"], play["position_ms"], play.get("rung"),
    )
    return row is not None
