"""Training runs: a version row, the interactions read once, ALS, EASE and the content network fitted, artefact stored.

``request_version`` creates the ``training`` row first, so whoever asked (the admin route, the CLI, the
event worker's schedule) knows the version before the work starts; ``train_version`` does the work and
leaves the row ``ready`` with its artefact key or ``failed`` with the reason. Both are plain async
functions: ``actors/rec_training.py`` runs ``train_version`` as a Ray task, tests may call it directly.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np

from ml import collaborative, content
from ml.signals import confidence, decay
from verseflow import logs
from verseflow.settings import Settings
from verseflow.storage import ObjectStore

log = logs.get_logger("ml.training")

ARTEFACT_PREFIX = "recs/models"


def artefact_key(version: int) -> str:
    return f"{ARTEFACT_PREFIX}/{version:010d}.npz"


def store_model(store: ObjectStore, model: collaborative.Model) -> str:
    """Put ``model``'s artefact at its version's key (blocking: run it in a thread); the key."""
    key = artefact_key(model.version)
    staged = store.staging_dir() / f"model-{uuid.uuid4().hex}.npz"
    try:
        staged.write_bytes(model.to_bytes())
        store.put_file(key, staged)
    finally:
        staged.unlink(missing_ok=True)
    return key


async def request_version(pool: asyncpg.Pool, trigger: str) -> int:
    """A new version in state ``training``: its number is what the caller reports."""
    return await pool.fetchval("INSERT INTO rec_models (trigger) VALUES ($1) RETURNING version", trigger)


async def training_entries(pool: asyncpg.Pool, settings: Settings,
                           now: datetime | None = None) -> list[tuple[str, str, float]]:
    """Every (user, track, signed confidence) with the decay applied up to ``now``."""
    now = now or datetime.now(UTC)
    rows = await pool.fetch("SELECT user_id, track_id, positive, negative, decayed_at, saved FROM interactions")
    entries = []
    for row in rows:
        factor = decay(row["decayed_at"], now, settings.rec_half_life_days)
        value = confidence(row["positive"] * factor, row["negative"] * factor, row["saved"], settings)
        if value:
            entries.append((str(row["user_id"]), str(row["track_id"]), value))
    return entries


async def content_vectors(pool: asyncpg.Pool) -> dict[str, np.ndarray]:
    """The content features of every published track whose analysis holds an audio embedding."""
    rows = await pool.fetch("SELECT id::text AS id, analysis FROM tracks "
                            "WHERE status = 'ready' AND analysis ? 'embedding'")
    found = {}
    for row in rows:
        vector = content.content_vector(row["analysis"])
        if vector is not None:
            found[row["id"]] = vector
    return found


async def train_version(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, version: int) -> dict[str, Any]:
    """Train ``version`` from the current interactions and publish it; the row says how it ended."""
    started = time.monotonic()
    try:
        entries = await training_entries(pool, settings)
        sounds = await content_vectors(pool)
        model = await asyncio.to_thread(functools.partial(collaborative.train, entries, settings, version=version,
                                                          content=sounds))
        stats = {"users": len(model.user_ids), "tracks": len(model.track_ids), "interactions": len(entries),
                 "sound_only_tracks": int((model.evidence == 0).sum()) if model.evidence is not None else 0,
                 "content_model": model.content_map is not None,
                 # epochs the network trained for (chosen on held-out played tracks); None for the ridge baseline
                 "content_epochs": getattr(model.content_map, "epochs", None),
                 "factors": model.als_factors,
                 "ease_rank": 0 if model.ease_projection is None else int(model.ease_projection.shape[1]),
                 "seconds": round(time.monotonic() - started, 3)}
        await publish_version(pool, store, model, stats)
    except Exception as exc:
        log.exception("training of recommendation model %s failed", version)
        await pool.execute("UPDATE rec_models SET state = 'failed', error = $2, finished_at = now() "
                           "WHERE version = $1", version, str(exc)[:2000])
        raise
    log.info("recommendation model %s ready: %s", version, stats)
    return {"version": version, "state": "ready", **stats}


async def publish_version(pool: asyncpg.Pool, store: ObjectStore, model: collaborative.Model,
                          stats: dict[str, Any] | None = None) -> str:
    """Store ``model``'s artefact and mark its version ready: serving processes pick it up from here."""
    key = await asyncio.to_thread(store_model, store, model)
    await pool.execute("UPDATE rec_models SET state = 'ready', artefact = $2, stats = $3::jsonb, finished_at = now() "
                       "WHERE version = $1", model.version, key, stats or {})
    return key


async def version_info(pool: asyncpg.Pool, version: int) -> dict[str, Any] | None:
    row = await pool.fetchrow("SELECT version, state, trigger, stats, error, created_at, finished_at "
                              "FROM rec_models WHERE version = $1", version)
    return dict(row) if row else None


async def due_for_schedule(pool: asyncpg.Pool, settings: Settings) -> bool:
    """Whether the schedule should start a run now: interval passed since the last one, and data to learn."""
    if settings.rec_train_interval_s <= 0:
        return False
    return await pool.fetchval(
        """SELECT EXISTS (SELECT 1 FROM interactions WHERE positive > 0 OR saved)
                  AND NOT EXISTS (SELECT 1 FROM rec_models
                                  WHERE created_at > now() - make_interval(secs => $1))""",
        settings.rec_train_interval_s)
