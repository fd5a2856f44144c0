"""PostgreSQL for the audio pipeline: track landmarks, job rows, publication and plays.

A track's landmarks are one ``track_fingerprints`` row (hashes and anchor frames as big-endian 32-bit
bytes): PostgreSQL is their durable copy, read in bulk when a ``FingerprintShard`` loads its partition;
queries go to the shards' in-memory index (``audio/landmark_index.py``), never to this table.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import numpy as np

from audio.fingerprint import Landmarks


async def put_landmarks(conn: asyncpg.Connection, track_id: uuid.UUID, landmarks: Landmarks) -> int:
    """Store (or replace) a track's landmarks as one row: the durable copy the shards load."""
    hashes, times = encode_landmarks(landmarks)
    await conn.execute(
        """INSERT INTO track_fingerprints (track_id, landmarks, hashes, times) VALUES ($1, $2, $3, $4)
           ON CONFLICT (track_id) DO UPDATE SET landmarks = $2, hashes = $3, times = $4""",
        track_id, len(landmarks.hashes), hashes, times,
    )
    return len(landmarks.hashes)


def encode_landmarks(landmarks: Landmarks) -> tuple[bytes, bytes]:
    """(hashes, times) as big-endian 32-bit bytes: the ``track_fingerprints`` columns."""
    return (landmarks.hashes.astype(">u4").tobytes(), np.rint(landmarks.times).astype(">i4").tobytes())


def decode_landmarks(hashes: bytes, times: bytes) -> Landmarks:
    return Landmarks(np.frombuffer(hashes, ">u4").astype(np.uint32), np.frombuffer(times, ">i4").astype(np.int32))


async def published_ids(pool: asyncpg.Pool) -> list[uuid.UUID]:
    """Every published track that has landmarks: what the shards together must hold."""
    rows = await pool.fetch(
        """SELECT f.track_id FROM track_fingerprints f JOIN tracks t ON t.id = f.track_id
           WHERE t.status = 'ready'""")
    return [r["track_id"] for r in rows]


async def unfingerprinted(pool: asyncpg.Pool) -> list[tuple[uuid.UUID, str]]:
    """(track id, source key) of published tracks without a ``track_fingerprints`` row."""
    rows = await pool.fetch(
        """SELECT t.id, t.source_key FROM tracks t LEFT JOIN track_fingerprints f ON f.track_id = t.id
           WHERE t.status = 'ready' AND t.source_key IS NOT NULL AND f.track_id IS NULL""")
    return [(r["id"], r["source_key"]) for r in rows]


async def without_timbre(pool: asyncpg.Pool, model: str, limit: int,
                         exclude: list[uuid.UUID] | None = None) -> list[tuple[uuid.UUID, str]]:
    """(track id, source key) of up to ``limit`` published, analysed tracks, not in ``exclude``, whose
    analysis has no ``timbre`` of ``model``, oldest first."""
    rows = await pool.fetch(
        """SELECT id, source_key FROM tracks
           WHERE status = 'ready' AND source_key IS NOT NULL AND analysis ? 'embedding'
             AND (analysis->'timbre'->>'model') IS DISTINCT FROM $1 AND NOT (id = ANY($3::uuid[]))
           ORDER BY published_at, id LIMIT $2""", model, limit, exclude or [])
    return [(r["id"], r["source_key"]) for r in rows]


async def put_timbre(conn: asyncpg.Connection, track_id: uuid.UUID, timbre: dict[str, Any]) -> bool:
    """Add (or replace) the ``timbre`` field of a published track's analysis; False if it is not published."""
    row = await conn.fetchrow(
        """UPDATE tracks SET analysis = jsonb_set(analysis, '{timbre}', $2::jsonb), updated_at = now()
           WHERE id = $1 AND status = 'ready' AND analysis IS NOT NULL RETURNING id""", track_id, timbre)
    return row is not None


async def published_landmarks(pool: asyncpg.Pool, track_ids: list[uuid.UUID]) -> list[tuple[str, Landmarks]]:
    """The landmarks of those of ``track_ids`` that are published, in one query."""
    rows = await pool.fetch(
        """SELECT f.track_id, f.hashes, f.times FROM track_fingerprints f JOIN tracks t ON t.id = f.track_id
           WHERE f.track_id = ANY($1::uuid[]) AND t.status = 'ready'""",
        track_ids,
    )
    return [(str(r["track_id"]), decode_landmarks(r["hashes"], r["times"])) for r in rows]


async def published_among(pool: asyncpg.Pool, track_ids: list[str]) -> set[str]:
    """Which of these tracks are published now: an index answer may lag a deletion by a moment."""
    rows = await pool.fetch("SELECT id FROM tracks WHERE id = ANY($1::uuid[]) AND status = 'ready'",
                            [uuid.UUID(t) for t in track_ids])
    return {str(r["id"]) for r in rows}


async def begin_attempt(conn: asyncpg.Connection, track_id: uuid.UUID) -> asyncpg.Record | None:
    """Count one more attempt at a track's job; None when the job is already finished."""
    return await conn.fetchrow(
        """UPDATE track_jobs j SET attempts = attempts + 1, state = 'running', updated_at = now()
           FROM tracks t
           WHERE j.track_id = $1 AND t.id = j.track_id AND j.state IN ('queued', 'running')
             AND t.status = 'processing'
           RETURNING j.attempts, t.source_key, t.uploaded_by, j.created_at AS queued_at""",
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


async def open_job_counts(pool: asyncpg.Pool) -> dict[str, int]:
    """Open jobs by state (``queued``: waiting for a transcoding slot; ``running``), zeros included."""
    rows = await pool.fetch("SELECT state, count(*) AS n FROM track_jobs WHERE state IN ('queued', 'running')"
                            " GROUP BY state")
    return {"queued": 0, "running": 0, **{r["state"]: r["n"] for r in rows}}
