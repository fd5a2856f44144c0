"""``FingerprintShard``: the catalogue's landmark index, partitioned over Ray actors.

Each shard holds the published tracks that ``audio.landmark_index.shard_of`` assigns it (a stable
hash of the track id; ``VERSEFLOW_FINGERPRINT_SHARDS`` of them) in a ``CatalogueIndex``. PostgreSQL
(``track_fingerprints``, one row per track) is the durable copy: a shard loads its partition when
it starts, and Ray restarts a killed shard (``max_restarts=-1``), which loads again; calls made
while it restarts are retried by Ray (``max_task_retries=-1``: every method is idempotent) and
queries wait until the load has finished, so a restarted shard never answers from a partial index.

Shards are named and detached, so every Serve replica and every ``TranscodeJob`` finds the same ones
(whoever comes first creates them). They reserve no CPU: a query is tens of milliseconds of numpy.
:class:`ShardedCatalogue` is what the use cases in ``audio/service.py`` call: a query is scattered to
every shard with async actor calls (the caller's event loop keeps serving other requests) and the
best candidates are merged; adds and removals go to the owning shard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import ray
from ray.actor import ActorHandle

from actors import named
from audio import repository, service
from audio.fingerprint import TRIPLET_BACKGROUND_RANK, Landmarks, Match, Probes
from audio.landmark_index import CatalogueIndex, merge, shard_cap, shard_of
from verseflow import logs
from verseflow.db import create_pool
from verseflow.settings import Settings
from verseflow.storage import object_store

NAMESPACE = named.NAMESPACE
SHARD_NAME = "verseflow-fingerprint-shard-{}-of-{}"
#: Tracks read per query while a shard loads its partition.
LOAD_BATCH = 500

log = logs.get_logger("actors.fingerprint_shard")
T = TypeVar("T")


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0, max_concurrency=1000)
class FingerprintShard:
    def __init__(self, settings: Settings, shard: int, shards: int) -> None:
        logs.configure()
        self._settings = settings
        self._shard, self._shards = shard, shards
        self._index = CatalogueIndex(shard_cap(settings.fingerprint_max_postings, shards))
        self._removed_while_loading: set[str] = set()
        self._loaded = asyncio.get_running_loop().create_task(self._load())  # held: a task needs a reference

    async def _load(self) -> None:
        """Index every published track of this partition (tracks added meanwhile are kept)."""
        pool = await create_pool(self._settings, min_size=1, max_size=1)
        try:
            mine = [t for t in await repository.published_ids(pool) if shard_of(t, self._shards) == self._shard]
            found: list[tuple[str, np.ndarray, np.ndarray]] = []
            for start in range(0, len(mine), LOAD_BATCH):
                for track_id, landmarks in await repository.published_landmarks(pool, mine[start:start + LOAD_BATCH]):
                    if track_id not in self._removed_while_loading and track_id not in self._index:
                        found.append((track_id, landmarks.hashes, landmarks.times))
        finally:
            await pool.close()
        self._index.add_many(found)
        self._removed_while_loading.clear()
        log.info("fingerprint shard loaded", extra={"shard": self._shard, **self._index.stats()._asdict()})

    async def ready(self) -> dict[str, int]:
        """Wait for the load; the index's size (tracks, landmarks, bytes)."""
        await asyncio.shield(self._loaded)
        return self._index.stats()._asdict()

    async def candidates(self, probes: Probes, exclude: str | None, min_matches: int, limit: int) -> list[Match]:
        """This partition's largest piles, significant or not: significance is decided over all shards'."""
        await asyncio.shield(self._loaded)
        return self._index.candidates(probes, exclude=exclude, min_matches=min_matches, limit=limit)

    async def add(self, track_id: str, hashes: np.ndarray, times: np.ndarray) -> None:
        self._index.add(track_id, hashes, times)

    async def remove(self, track_id: str) -> bool:
        if not self._loaded.done():
            self._removed_while_loading.add(track_id)
        return self._index.remove(track_id)

    async def track_ids(self) -> list[str]:
        await asyncio.shield(self._loaded)
        return self._index.track_ids


def _names(settings: Settings) -> list[str]:
    return [SHARD_NAME.format(index, settings.fingerprint_shards) for index in range(settings.fingerprint_shards)]


def shard(settings: Settings, index: int) -> ActorHandle:
    """The named shard ``index`` of the configured count, created if it does not exist yet (blocks: Ray)."""
    return named.get_or_create(FingerprintShard, SHARD_NAME.format(index, settings.fingerprint_shards), settings,
                               index, settings.fingerprint_shards)


def shards(settings: Settings) -> list[ActorHandle]:
    return [shard(settings, i) for i in range(settings.fingerprint_shards)]


class ShardedCatalogue:
    """The ``audio.service.Catalogue`` of a Ray cluster: the shards, found by name."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._shards: list[ActorHandle] | None = None

    async def _all(self) -> list[ActorHandle]:
        if self._shards is None:
            self._shards = await asyncio.to_thread(shards, self._settings)  # finding actors blocks
        return self._shards

    async def search(self, probes: Probes, *, exclude: str | None, min_matches: int,
                     max_results: int) -> list[Match]:
        async def scatter(everyone: list[ActorHandle]) -> list[list[Match]]:
            shared = ray.put(probes) if len(everyone) > 1 else probes  # one copy in the object store for all
            limit = max_results + TRIPLET_BACKGROUND_RANK  # the background is the whole catalogue's k-th pile
            return list(await asyncio.gather(*(s.candidates.remote(shared, exclude, min_matches, limit)
                                               for s in everyone)))

        return merge(await self._calling(scatter), min_matches=min_matches, max_results=max_results)

    async def add(self, track_id: str, landmarks: Landmarks) -> None:
        await self._calling(lambda everyone: self._owner(everyone, track_id).add.remote(
            track_id, landmarks.hashes, landmarks.times))

    async def remove(self, track_id: str) -> None:
        await self._calling(lambda everyone: self._owner(everyone, track_id).remove.remote(track_id))

    async def ready(self) -> list[dict[str, Any]]:
        """Wait until every shard has loaded its partition; their sizes."""
        return await self._calling(lambda everyone: asyncio.gather(*(s.ready.remote() for s in everyone)))

    async def _calling(self, call: Callable[[list[ActorHandle]], Awaitable[T]]) -> T:
        """``call`` on the shards; once more on fresh handles if one was stopped for good (``stop_shards``
        from another process): a crashed shard is restarted by Ray and keeps its handle, a stopped one
        is created anew here."""
        try:
            return await call(await self._all())
        except ray.exceptions.ActorDiedError:
            self._shards = None
            named.forget(_names(self._settings))
            return await call(await self._all())

    def _owner(self, everyone: list[ActorHandle], track_id: str) -> ActorHandle:
        return everyone[shard_of(track_id, self._settings.fingerprint_shards)]


_catalogues: dict[int, ShardedCatalogue] = {}


def catalogue(settings: Settings) -> ShardedCatalogue:
    """This process's handle on the shards (one per shard count)."""
    return _catalogues.setdefault(settings.fingerprint_shards, ShardedCatalogue(settings))


def stop_shards(settings: Settings) -> None:
    """Kill the shards for good (``make up``'s Ctrl-C, the end of a test run); PostgreSQL keeps the landmarks."""
    named.kill(_names(settings))
    _catalogues.pop(settings.fingerprint_shards, None)


async def index_unfingerprinted(settings: Settings) -> int:
    """Give tracks published before the triplet index their hashes (``make up`` runs this at start)."""
    pool = await create_pool(settings, min_size=1, max_size=2)
    try:
        return await service.index_unfingerprinted(pool, object_store(settings), catalogue(settings),
                                                   max_duration_s=settings.track_max_duration_s)
    finally:
        await pool.close()
