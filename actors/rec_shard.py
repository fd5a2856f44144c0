"""``RecShard``: the recommendation model's item vectors partitioned over Ray actors (``ml.item_index``).

Each of ``rec_shards`` named, detached actors holds its hash partition of the items of the model
versions it was asked about, as ``ml.item_index.ShardIndex`` objects (faiss). The artefact in the
object store is the durable copy: a shard loads a version's partition the first time it is asked
(``load`` before a swap, or lazily by a query carrying that version), keeps the newest
``rec_shard_versions_kept`` versions, and loads off the event loop, so queries on the version in
service keep being answered while the next one loads (blue/green inside each shard).

Ray restarts a killed shard (``max_restarts=-1``); it comes back empty and reloads from the object
store on its first call. :class:`ShardedIndex`, what ``ml.recommend`` searches, scatters a query to
every shard with async calls, waits at most ``rec_shard_timeout_s`` for each, and merges the top k of
those that answered: while a shard is down, requests are answered from the others and the answer
says how many shards took part. Queries that arrive while ``rec_shard_calls_in_flight`` calls to a
shard are under way travel together in its next call (``search_many``, one faiss search for the
batch): a Ray call's overhead, not the search, is what a small partition costs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

import numpy as np
import ray
from ray.actor import ActorHandle

from actors import named
from audio.landmark_index import shard_of
from ml.collaborative import Model
from ml.item_index import (
    Answer,
    ItemIndex,
    Metric,
    ShardIndex,
    check_queries,
    measured_recall,
    merge,
    set_search_threads,
)
from ml.metrics import SHARD_CALLS, SHARD_QUERIES, SHARD_SEARCH
from ml.recommend import local_index
from verseflow import logs
from verseflow.coalesce import Coalescer
from verseflow.errors import DomainError
from verseflow.settings import Settings
from verseflow.storage import object_store

NAMESPACE = named.NAMESPACE
SHARD_NAME = "verseflow-rec-shard-{}-of-{}"

log = logs.get_logger("actors.rec_shard")


class ShardsUnavailable(DomainError):
    status, title = 503, "Recommendation index unavailable"


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0, max_concurrency=1000)
class RecShard:
    def __init__(self, settings: Settings, shard: int, shards: int) -> None:
        logs.configure()
        self._settings = settings
        self._shard, self._shards = shard, shards
        self._versions: dict[int, ShardIndex] = {}
        self._loading: dict[int, asyncio.Task[ShardIndex]] = {}
        set_search_threads(settings.rec_search_threads)

    def _read(self, version: int, artefact: str) -> ShardIndex:
        model = Model.from_bytes(object_store(self._settings).read_bytes(artefact))
        if model.version != version:
            raise ValueError(f"artefact {artefact} holds version {model.version}, not {version}")
        return ShardIndex.from_model(model, self._shard, self._shards,
                                     hnsw_min_items=self._settings.rec_shard_hnsw_min_items,
                                     ef_search=self._settings.rec_hnsw_ef_search)

    async def _get(self, version: int, artefact: str) -> ShardIndex:
        """The partition of ``version``, loaded once however many calls ask for it meanwhile."""
        if (index := self._versions.get(version)) is not None:
            return index
        task = self._loading.get(version)
        if task is None:
            task = self._loading[version] = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._read, version, artefact))
        try:
            index = await asyncio.shield(task)
        finally:
            if task.done():
                self._loading.pop(version, None)
        self._versions[version] = index
        for old in sorted(self._versions)[:-self._settings.rec_shard_versions_kept]:
            del self._versions[old]
        log.info("rec shard loaded", extra={"shard": self._shard, "version": version, "items": len(index)})
        return index

    async def load(self, version: int, artefact: str) -> dict[str, Any]:
        index = await self._get(version, artefact)
        return {"shard": self._shard, "version": version, "items": len(index), "hnsw": index.hnsw}

    async def search_many(self, queries: list[Query]) -> list[list[tuple[str, float]] | Exception]:
        """Answers to a batch of queries, in order, one faiss call per (version, metric) in the batch.
        A version that cannot be loaded fails its own queries (as an exception in their places), not
        the batch's others."""
        SHARD_CALLS.inc(shard=str(self._shard))
        SHARD_QUERIES.inc(len(queries), shard=str(self._shard))
        groups: dict[tuple[int, str, str], list[int]] = {}
        for position, (version, artefact, _vector, _k, _exclude, metric) in enumerate(queries):
            groups.setdefault((version, artefact, metric), []).append(position)
        answers: list[list[tuple[str, float]] | Exception] = [[] for _ in queries]
        for (version, artefact, metric), positions in groups.items():
            try:
                index = await self._get(version, artefact)
            except Exception as exc:  # noqa: BLE001 - returned to the queries of that version
                for position in positions:
                    answers[position] = exc
                continue
            found = index.search_many(np.stack([queries[p][2] for p in positions]), [queries[p][3] for p in positions],
                                      [queries[p][4] for p in positions], metric)  # type: ignore[arg-type]
            for position, hits in zip(positions, found, strict=True):
                answers[position] = hits
        return answers

    async def versions(self) -> list[int]:
        return sorted(self._versions)


#: one query as a shard receives it: version, artefact, vector, k, excluded track ids it holds, metric
Query = tuple[int, str, np.ndarray, int, list[str], str]


def _names(settings: Settings) -> list[str]:
    return [SHARD_NAME.format(index, settings.rec_shards) for index in range(settings.rec_shards)]


def shard(settings: Settings, index: int) -> ActorHandle:
    """The named shard ``index`` of the configured count, created if it does not exist yet (blocks: Ray)."""
    return named.get_or_create(RecShard, SHARD_NAME.format(index, settings.rec_shards), settings, index,
                               settings.rec_shards)


def shards(settings: Settings) -> list[ActorHandle]:
    return [shard(settings, i) for i in range(settings.rec_shards)]


class ShardedIndex:
    """``ml.item_index.ItemIndex`` over the ``RecShard`` actors, found by name."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._shards: list[ActorHandle] | None = None
        self._batchers: list[Coalescer[Query, list[tuple[str, float]] | Exception]] | None = None

    async def _all(self) -> list[ActorHandle]:
        if self._shards is None:
            self._shards = await asyncio.to_thread(shards, self._settings)  # finding actors blocks
        return self._shards

    async def _senders(self) -> list[Coalescer[Query, list[tuple[str, float]] | Exception]]:
        """One batcher per shard: a query goes out at once while fewer than ``rec_shard_calls_in_flight``
        calls to its shard are under way, else with the others that wait for the next call. Each Ray
        call costs about a millisecond of CPU at both ends, far more than a search of a small
        partition, so under load batches grow instead of calls (bench/README.md, Recommendations)."""
        if self._batchers is None:
            self._batchers = [
                Coalescer(handle.search_many.remote, max_batch=self._settings.rec_shard_batch_max,
                          max_in_flight=self._settings.rec_shard_calls_in_flight)
                for handle in await self._all()]
        return self._batchers

    def _forget(self) -> None:
        """Drop handles of shards stopped for good (``stop_shards``); crashed ones keep theirs."""
        self._shards = None
        self._batchers = None
        named.forget(_names(self._settings))

    async def prepare(self, model: Model, artefact: str) -> float:
        """Load ``model`` into every shard (beside the version in service), then measure recall@10 of the
        sharded search against exact search on the version's fixed query set."""
        try:
            await asyncio.gather(*(s.load.remote(model.version, artefact) for s in await self._all()))
        except ray.exceptions.ActorDiedError:
            self._forget()
            await asyncio.gather(*(s.load.remote(model.version, artefact) for s in await self._all()))
        queries = check_queries(model, self._settings.rec_swap_check_queries)
        return await measured_recall(self, model, artefact, queries)

    async def search(self, model: Model, artefact: str, vector: np.ndarray, k: int, exclude: Collection[str],
                     metric: Metric) -> Answer:
        everyone = await self._senders()
        count = len(everyone)
        owned: list[list[str]] = [[] for _ in range(count)]
        for track_id in exclude:
            owned[shard_of(track_id, count)].append(track_id)
        vector = np.asarray(vector, dtype=np.float32)
        timeout = self._settings.rec_shard_timeout_s

        async def ask(i: int, sender: Coalescer[Query, list[tuple[str, float]] | Exception]
                      ) -> list[tuple[str, float]]:
            started, outcome = time.perf_counter(), "error"
            try:
                got = await asyncio.wait_for(sender.get((model.version, artefact, vector, k, owned[i], metric)),
                                             timeout)
                if isinstance(got, Exception):
                    raise got
                outcome = "ok"
                return got
            except TimeoutError:
                outcome = "timeout"
                raise
            finally:
                SHARD_SEARCH.observe(time.perf_counter() - started, shard=str(i), outcome=outcome)

        results = await asyncio.gather(*(ask(i, s) for i, s in enumerate(everyone)), return_exceptions=True)
        answers = [r for r in results if not isinstance(r, BaseException)]
        failed = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
        for i, error in failed:
            log.warning("rec shard %s left out of an answer: %r", i, error)
            if isinstance(error, ray.exceptions.ActorDiedError):
                self._forget()
        if not answers:
            raise ShardsUnavailable("no recommendation shard answered; try again shortly")
        return Answer(merge(answers, k), count, len(answers))


_indexes: dict[int, ShardedIndex] = {}


def sharded_index(settings: Settings) -> ShardedIndex:
    """This process's handle on the shards (one per shard count)."""
    return _indexes.setdefault(settings.rec_shards, ShardedIndex(settings))


def stop_shards(settings: Settings) -> None:
    """Kill the shards for good (the end of a test run, ``make up``'s Ctrl-C); the artefacts stay stored."""
    named.kill(_names(settings))
    _indexes.pop(settings.rec_shards, None)


def serving_index(settings: Settings) -> ItemIndex:
    """The shards when this process is connected to Ray (unless ``rec_index`` says ``local``), else
    ``ml.recommend``'s in-process index."""
    return sharded_index(settings) if ray.is_initialized() and settings.rec_index == "shards" \
        else local_index(settings)
