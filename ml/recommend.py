"""Serving recommendations: the home feed and similar tracks, from the newest ready model version.

The model is held in the serving process (``ModelCache``: the newest ``ready`` version, looked up at
most every ``rec_model_refresh_s``), which folds users in and explains; the item vectors are searched
through an ``ml.item_index.ItemIndex``: the ``RecShard`` actors when Ray runs (``actors/rec_shard.py``),
one process otherwise. A newer version is loaded into the index beside the one in service, checked
(recall@10 against exact search, at least ``rec_swap_min_recall``) and only then swapped in, as one
assignment; requests keep being answered from the previous version meanwhile. Per request:

- the listener's interaction rows (one indexed read) are folded into a fresh user vector, so plays
  made since the training count at once;
- tracks the listener already played, skipped, saved or added are masked before the cut; the cut is
  then checked against the catalogue (published, not the listener's own work), widening until the page
  is full or the catalogue is exhausted;
- each item carries a reason: the listener's own interaction that contributes most to its score.

A listener the model cannot place (no interactions, or only with tracks newer than the model) gets
their saved tracks and popular picks, those in the genres of what they saved first; a feed the model
cannot fill is topped up the same way.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np

from accounts.model import Principal
from ml.collaborative import Model
from ml.content import content_vector
from ml.item_index import Answer, ItemIndex, LocalIndex, Metric, set_search_threads
from ml.radio import Candidate, build_queue
from ml.signals import confidence, decay
from verseflow import logs
from verseflow.errors import InvalidInput, NotFound
from verseflow.settings import Settings
from verseflow.storage import ObjectStore

log = logs.get_logger("ml.recommend")

_TRACK_COLUMNS = """t.id, t.title, t.artist_id, a.name AS artist_name, t.album_id, t.genre, t.duration_s"""


class ModelCache:
    """The model version this process serves; a newer one replaces it whole (readers never see half),
    after it was loaded into the item index and passed the recall check."""

    def __init__(self) -> None:
        self.model: Model | None = None
        self.artefact = ""
        self.rejected: set[int] = set()
        self._checked = 0.0
        self._lock = asyncio.Lock()

    async def current(self, pool: asyncpg.Pool, store: ObjectStore, settings: Settings,
                      index: ItemIndex) -> tuple[Model, str] | None:
        """The model in service and its artefact key; a request never waits for a newer one to load."""
        if time.monotonic() - self._checked < settings.rec_model_refresh_s or (self._lock.locked() and self.model):
            return self.serving()
        async with self._lock:
            if time.monotonic() - self._checked >= settings.rec_model_refresh_s:
                row = await pool.fetchrow("SELECT version, artefact FROM rec_models WHERE state = 'ready' "
                                          "ORDER BY version DESC LIMIT 1")
                if row is not None and row["version"] not in self.rejected and \
                        (self.model is None or self.model.version != row["version"]):
                    await self._swap(store, settings, index, row["version"], row["artefact"])
                self._checked = time.monotonic()
        return self.serving()

    async def _swap(self, store: ObjectStore, settings: Settings, index: ItemIndex, version: int,
                    artefact: str) -> None:
        data = await asyncio.to_thread(store.read_bytes, artefact)
        model = await asyncio.to_thread(Model.from_bytes, data)
        measured = await index.prepare(model, artefact)
        if measured < settings.rec_swap_min_recall:
            self.rejected.add(version)
            log.error("model %s not swapped in: recall@10 %.3f of its index < %.3f", version, measured,
                      settings.rec_swap_min_recall)
            return
        self.model, self.artefact = model, artefact
        log.info("serving recommendation model %s (index recall@10 %.3f)", version, measured)

    def serving(self) -> tuple[Model, str] | None:
        model, artefact = self.model, self.artefact
        return (model, artefact) if model is not None else None


_cache = ModelCache()


def model_cache() -> ModelCache:
    """This process's cache (one per Serve replica)."""
    return _cache


_local = LocalIndex()
_index_factory: Callable[[Settings], ItemIndex] | None = None


def use_index(factory: Callable[[Settings], ItemIndex] | None) -> None:
    """Where this process searches item vectors from now on (the API registers the ``RecShard`` actors
    when Ray runs); None: in process."""
    global _index_factory
    _index_factory = factory


def local_index(settings: Settings) -> LocalIndex:
    _local.hnsw_min_items, _local.ef_search = settings.rec_shard_hnsw_min_items, settings.rec_hnsw_ef_search
    set_search_threads(settings.rec_search_threads)
    return _local


def item_index(settings: Settings) -> ItemIndex:
    return _index_factory(settings) if _index_factory is not None else local_index(settings)


def _check_limit(limit: int, settings: Settings) -> None:
    if limit > settings.rec_limit_max:
        raise InvalidInput(f"limit is at most {settings.rec_limit_max}")


async def _published(pool: asyncpg.Pool, track_ids: list[str], viewer: uuid.UUID | None) -> dict[str, dict[str, Any]]:
    """The published tracks among ``track_ids`` that are not ``viewer``'s own work, by id."""
    rows = await pool.fetch(
        f"""SELECT {_TRACK_COLUMNS} FROM tracks t JOIN artists a ON a.id = t.artist_id
            WHERE t.id = ANY($1::uuid[]) AND t.status = 'ready' AND a.owner_id IS DISTINCT FROM $2""",
        track_ids, viewer)
    return {str(r["id"]): dict(r) for r in rows}


async def _ranked(pool: asyncpg.Pool, index: ItemIndex, model: Model, artefact: str, vector: np.ndarray,
                  metric: Metric, exclude: list[str], limit: int,
                  viewer: uuid.UUID | None) -> tuple[list[tuple[str, float, dict[str, Any]]], Answer]:
    """The best ``limit`` items for ``vector`` (``exclude`` left out before the cut) that pass the
    catalogue filters (published, not ``viewer``'s own), widening the search until the page is full
    or the index has nothing more; and the index's last answer (how many shards took part)."""
    cut = max(4 * limit, 50)
    while True:
        answer = await index.search(model, artefact, vector, cut, exclude, metric)
        tracks = await _published(pool, [t for t, _ in answer.hits], viewer)
        picked = [(t, score, tracks[t]) for t, score in answer.hits if t in tracks][:limit]
        if len(picked) >= limit or len(answer.hits) < cut or cut >= len(model.track_ids):
            return picked, answer
        cut *= 4


def _served(answer: Answer | None) -> dict[str, Any] | None:
    if answer is None:
        return None
    return {"total": answer.shards, "answered": answer.answered, "complete": answer.answered == answer.shards}


async def _interactions(pool: asyncpg.Pool, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT track_id::text AS track_id, positive, negative, decayed_at, saved, completes, partials, skips,
                  playlist_adds, follows FROM interactions WHERE user_id = $1""", user_id)


def _reason(row: asyncpg.Record, title: str) -> str:
    if row["saved"]:
        return f"because you saved {title}"
    if row["completes"] or row["partials"]:
        return f"because you played {title}"
    if row["playlist_adds"]:
        return f"because you added {title} to a playlist"
    return f"because you follow a playlist with {title}"


async def recommendations(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, who: Principal,
                          limit: int, index: ItemIndex | None = None,
                          cache: ModelCache | None = None) -> dict[str, Any]:
    """The home feed: ``limit`` items of track, score and reason, the model version behind them and how
    many index shards answered. ``index`` and ``cache``: this process's unless given (a benchmark's own)."""
    _check_limit(limit, settings)
    index = index or item_index(settings)
    rows = await _interactions(pool, who.user_id)
    known = [r["track_id"] for r in rows]
    serving = await (cache or model_cache()).current(pool, store, settings, index)
    items: list[dict[str, Any]] = []
    answer: Answer | None = None
    now = datetime.now(UTC)
    if serving is not None and rows:
        model, artefact = serving
        values = []
        for r in rows:
            factor = decay(r["decayed_at"], now, settings.rec_half_life_days)
            values.append((r["track_id"], confidence(r["positive"] * factor, r["negative"] * factor,
                                                     r["saved"], settings)))
        user_row = model.user_row(values)
        if (user_row.data > 0).any():
            picked, answer = await _ranked(pool, index, model, artefact, model.fold_in(user_row), "dot",
                                           known, limit, who.user_id)
            by_track = {r["track_id"]: r for r in rows}
            columns = [model.track_index[t] for t, _, _ in picked]
            sources = dict(zip(columns, model.because(user_row, columns), strict=True))
            titles = dict(await pool.fetch("SELECT id::text, title FROM tracks WHERE id = ANY($1::uuid[])",
                                           [model.track_ids[s] for s in sources.values() if s is not None]))
            for column, (_, score, track) in zip(columns, picked, strict=True):
                source = sources[column]
                source_id = model.track_ids[source] if source is not None else None
                if source_id in titles and model.is_cold(column):
                    reason = f"sounds like {titles[source_id]}"
                elif source_id in by_track and source_id in titles:
                    reason = _reason(by_track[source_id], titles[source_id])
                else:
                    reason = "popular with listeners like you"
                items.append({"track": track, "score": round(score, 6), "reason": reason})
    if len(items) < limit:
        items += await _cold_start(pool, settings, who, rows, limit - len(items),
                                   exclude=known + [str(i["track"]["id"]) for i in items], with_saved=not items)
    return {"model_version": serving[0].version if serving else None, "items": items, "shards": _served(answer)}


async def _cold_start(pool: asyncpg.Pool, settings: Settings, who: Principal, rows: list[asyncpg.Record],
                      limit: int, *, exclude: list[str], with_saved: bool) -> list[dict[str, Any]]:
    """Saved tracks (when the model gave nothing) and popular picks, in the saved tracks' genres first."""
    items: list[dict[str, Any]] = []
    saved = [r["track_id"] for r in rows if r["saved"]]
    if with_saved and saved:
        library = await _published(pool, saved, who.user_id)
        items += [{"track": library[t], "score": settings.rec_save_weight, "reason": "in your library"}
                  for t in saved if t in library][:limit]
    genres = sorted({t["genre"] for t in (await _published(pool, saved, None)).values() if t["genre"]})
    taken = exclude + [str(i["track"]["id"]) for i in items]
    if genres and len(items) < limit:
        for track, listeners in await popular(pool, settings, limit - len(items), exclude=taken, genres=genres,
                                              viewer=who.user_id):
            items.append({"track": track, "score": float(listeners), "reason": f"popular in {track['genre']}"})
            taken.append(str(track["id"]))
    if len(items) < limit:
        for track, listeners in await popular(pool, settings, limit - len(items), exclude=taken,
                                              viewer=who.user_id):
            items.append({"track": track, "score": float(listeners), "reason": "popular on VerseFlow"})
    return items


async def popular(pool: asyncpg.Pool, settings: Settings, limit: int, *, exclude: list[str],
                  genres: list[str] | None = None, viewer: uuid.UUID | None = None) -> list[tuple[dict[str, Any], int]]:
    """Published tracks by how many listeners showed liking them in the window (not by raw plays, so one
    listener replaying a track cannot lift it), ties by decayed evidence."""
    rows = await pool.fetch(
        f"""SELECT {_TRACK_COLUMNS}, count(*) AS listeners,
                   sum(i.positive * power(0.5, greatest(0, extract(epoch FROM now() - i.decayed_at))
                                               / 86400 / $5::float8)) AS evidence
            FROM interactions i JOIN tracks t ON t.id = i.track_id JOIN artists a ON a.id = t.artist_id
            WHERE (i.positive > i.negative OR i.saved) AND i.updated_at > now() - make_interval(days => $4)
              AND t.status = 'ready' AND NOT (t.id = ANY($2::uuid[]))
              AND ($3::text[] IS NULL OR t.genre = ANY($3::text[])) AND a.owner_id IS DISTINCT FROM $6
            GROUP BY t.id, a.name ORDER BY listeners DESC, evidence DESC, t.id LIMIT $1""",
        limit, exclude, genres, int(settings.rec_popular_window_days), settings.rec_half_life_days, viewer)
    return [({k: r[k] for k in r.keys() if k not in ("listeners", "evidence")}, r["listeners"]) for r in rows]


async def similar_tracks(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, who: Principal | None,
                         track_id: uuid.UUID, limit: int, index: ItemIndex | None = None) -> dict[str, Any]:
    """Tracks whose listeners overlap with this one's (cosine of ALS item factors); for a track the model
    does not know yet, popular tracks of its genre."""
    _check_limit(limit, settings)
    seed = await pool.fetchrow("SELECT id, title, genre, status, analysis FROM tracks WHERE id = $1", track_id)
    if seed is None or seed["status"] != "ready":
        raise NotFound("track not found")
    index = index or item_index(settings)
    serving = await model_cache().current(pool, store, settings, index)
    items: list[dict[str, Any]] = []
    answer: Answer | None = None
    vector, heard = _seed_vector(serving[0], str(track_id), seed["analysis"]) if serving else (None, False)
    if serving is not None and vector is not None:
        model, artefact = serving
        picked, answer = await _ranked(pool, index, model, artefact, vector, "cosine", [str(track_id)], limit, None)
        reason = f"sounds like {seed['title']}" if heard else f"listeners of {seed['title']} also play this"
        for _, score, track in picked:
            items.append({"track": track, "score": round(score, 6), "reason": reason})
    if len(items) < limit and seed["genre"]:
        taken = [str(track_id)] + [str(i["track"]["id"]) for i in items]
        for track, listeners in await popular(pool, settings, limit - len(items), exclude=taken,
                                              genres=[seed["genre"]]):
            items.append({"track": track, "score": float(listeners), "reason": f"popular in {track['genre']}"})
    return {"model_version": serving[0].version if serving else None, "seed": str(track_id), "items": items,
            "shards": _served(answer)}


def _seed_vector(model: Model, track_id: str, analysis: dict[str, Any] | None) -> tuple[np.ndarray | None, bool]:
    """The unit vector to search from for a seed track, and whether it comes from its sound only: the
    model's vector when the track was known at training, else its sound through the content model."""
    item = model.track_index.get(track_id)
    if item is not None:
        return model.normalized_items[item], model.is_cold(item)
    features = content_vector(analysis)
    predicted = model.sound_vector(features) if features is not None else None
    if predicted is None:
        return None, False
    return predicted / max(float(np.linalg.norm(predicted)), 1e-9), True


async def radio(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, who: Principal, track_id: uuid.UUID,
                limit: int, index: ItemIndex | None = None) -> dict[str, Any]:
    """A queue from a seed track (``ml.radio``): its neighbourhood, in an order that flows, no artist twice
    in a row, without the tracks the listener skips; popular tracks of its genre when it cannot be placed."""
    _check_limit(limit, settings)
    seed = await pool.fetchrow(
        """SELECT id, title, genre, status, artist_id, analysis, (analysis->'tempo'->>'bpm')::float8 AS bpm,
                  (analysis->'loudness'->>'integrated_lufs')::float8 AS lufs FROM tracks WHERE id = $1""", track_id)
    if seed is None or seed["status"] != "ready":
        raise NotFound("track not found")
    index = index or item_index(settings)
    serving = await model_cache().current(pool, store, settings, index)
    items: list[dict[str, Any]] = []
    answer: Answer | None = None
    vector, _ = _seed_vector(serving[0], str(track_id), seed["analysis"]) if serving else (None, False)
    if serving is not None and vector is not None:
        model, artefact = serving
        skipped = [r["track_id"] for r in await pool.fetch(
            "SELECT track_id::text AS track_id FROM interactions WHERE user_id = $1 AND negative > positive "
            "AND NOT saved", who.user_id)]
        answer = await index.search(model, artefact, vector, settings.rec_radio_candidates,
                                    [str(track_id)] + skipped, "cosine")
        ids = [t for t, _ in answer.hits]
        tracks = await _published(pool, ids, None)
        sound = {r["id"]: r for r in await pool.fetch(
            """SELECT id::text AS id, (analysis->'tempo'->>'bpm')::float8 AS bpm,
                      (analysis->'loudness'->>'integrated_lufs')::float8 AS lufs
               FROM tracks WHERE id = ANY($1::uuid[])""", list(tracks))}
        candidates = [Candidate(t, str(tracks[t]["artist_id"]), model.normalized_items[model.track_index[t]],
                                sound[t]["bpm"], sound[t]["lufs"], tracks[t]) for t in ids if t in tracks]
        start = Candidate(str(track_id), str(seed["artist_id"]), vector, seed["bpm"], seed["lufs"])
        for candidate, similarity in build_queue(start, candidates, limit, settings):
            items.append({"track": candidate.track, "score": round(similarity, 6),
                          "reason": f"radio from {seed['title']}"})
    if not items and seed["genre"]:
        for track, listeners in await popular(pool, settings, limit, exclude=[str(track_id)], genres=[seed["genre"]]):
            items.append({"track": track, "score": float(listeners), "reason": f"popular in {track['genre']}"})
    return {"model_version": serving[0].version if serving else None, "seed": str(track_id), "items": items,
            "shards": _served(answer)}
