"""Item-vector search for serving: one partition of a model version's items in faiss, and the merge.

A model version's items are hash-partitioned (``audio.landmark_index.shard_of`` on the track id, the
same stable hash the fingerprint shards use) over ``rec_shards`` partitions. A :class:`ShardIndex`
holds one partition in two faiss indexes: the raw item factors (inner product: the home feed's
``user · item`` scores) and the unit-length ones (cosine: similar tracks). Below
``rec_shard_hnsw_min_items`` items it searches exactly (``IndexFlatIP``: about 4 ms a query for
100k × 64 here, ARCHITECTURE.md §9); above, HNSW, whose recall the swap check measures.

Filters that depend only on the listener (tracks they played, skipped, saved or added) are applied
before the cut: each partition searches ``k`` plus the number of excluded tracks it holds and drops
them, so ``k`` results survive whenever the partition has them. :func:`merge` keeps the best ``k`` of
the partitions' answers. :class:`ItemIndex` is what ``ml.recommend`` searches: :class:`LocalIndex`
in one process (tests without Ray, tools), the ``RecShard`` actors in production
(``actors/rec_shard.py``).

Plain Python, numpy and faiss: no Ray here.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Collection, Sequence
from typing import Literal, NamedTuple, Protocol

import faiss
import numpy as np

from audio.landmark_index import shard_of
from ml.collaborative import Model

Metric = Literal["dot", "cosine"]
#: HNSW graph degree; efSearch is ``ef_search`` (a setting), raised to at least 2k per query.
HNSW_M = 32


class Answer(NamedTuple):
    """Merged hits (track id, score; best first) and how many partitions took part in them."""

    hits: list[tuple[str, float]]
    shards: int
    answered: int


def set_search_threads(threads: int) -> None:
    """OpenMP threads of one faiss search in this process. One by default: queries run side by side
    (many requests, several shards per node), and a single query split over threads that other queries
    also want measured about 3x slower here than on one thread."""
    faiss.omp_set_num_threads(threads)


def partition(model: Model, shard: int, shards: int) -> np.ndarray:
    """Row numbers of ``model``'s items that belong to partition ``shard`` of ``shards``."""
    return np.asarray([i for i, t in enumerate(model.track_ids) if shard_of(t, shards) == shard], dtype=np.int64)


def _build(vectors: np.ndarray, hnsw: bool) -> faiss.Index:
    dim = vectors.shape[1]
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT) if hnsw else faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


class ShardIndex:
    """One partition of one model version: its track ids and their faiss indexes."""

    def __init__(self, version: int, track_ids: Sequence[str], vectors: np.ndarray, *, hnsw_min_items: int,
                 ef_search: int = 200) -> None:
        self.version = version
        self.ef_search = ef_search
        self.track_ids = list(track_ids)
        self.position = {t: i for i, t in enumerate(self.track_ids)}
        self.hnsw = len(self.track_ids) >= hnsw_min_items
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(self.track_ids):
            raise ValueError(f"{len(self.track_ids)} track ids need a 2-d array of as many rows, "
                             f"not shape {vectors.shape}")
        norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        self._indexes = {"dot": _build(vectors, self.hnsw), "cosine": _build(vectors / norms, self.hnsw)}

    @classmethod
    def from_model(cls, model: Model, shard: int, shards: int, *, hnsw_min_items: int,
                   ef_search: int = 200) -> ShardIndex:
        rows = partition(model, shard, shards)
        return cls(model.version, [model.track_ids[i] for i in rows], model.item_factors[rows],
                   hnsw_min_items=hnsw_min_items, ef_search=ef_search)

    def __len__(self) -> int:
        return len(self.track_ids)

    def search(self, vector: np.ndarray, k: int, exclude: Collection[str] = (),
               metric: Metric = "dot") -> list[tuple[str, float]]:
        """The best ``k`` items of this partition for ``vector`` (``exclude`` left out), best first."""
        return self.search_many(np.asarray(vector, dtype=np.float32).reshape(1, -1), [k], [exclude], metric)[0]

    def search_many(self, vectors: np.ndarray, ks: Sequence[int], excludes: Sequence[Collection[str]],
                    metric: Metric = "dot") -> list[list[tuple[str, float]]]:
        """:meth:`search` for each row of ``vectors``, in one faiss call: a batch of queries costs about
        what one does (the actor's per-call overhead is paid once, faiss scans the items once)."""
        wants = [min(len(self.track_ids), k + sum(1 for t in exclude if t in self.position)) if k > 0 else 0
                 for k, exclude in zip(ks, excludes, strict=True)]
        top = max(wants, default=0)
        if top <= 0:
            return [[] for _ in ks]
        index = self._indexes[metric]
        if self.hnsw:
            index.hnsw.efSearch = max(self.ef_search, 2 * top)
        matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(len(ks), -1))
        scores, rows = index.search(matrix, top)
        answers = []
        for k, exclude, row_scores, row_ids in zip(ks, excludes, scores, rows, strict=True):
            skip = set(exclude)
            hits = [(self.track_ids[r], float(s)) for r, s in zip(row_ids, row_scores, strict=True)
                    if r >= 0 and self.track_ids[r] not in skip]
            answers.append(hits[:k] if k > 0 else [])
        return answers


def merge(answers: Sequence[Sequence[tuple[str, float]]], k: int) -> list[tuple[str, float]]:
    """The best ``k`` hits over every partition's answer (ties by track id, so the order is stable)."""
    return heapq.nsmallest(k, (hit for answer in answers for hit in answer), key=lambda h: (-h[1], h[0]))


def exact(model: Model, vector: np.ndarray, k: int, metric: Metric = "dot") -> list[str]:
    """The true top ``k`` track ids by numpy over every item: the reference the swap check compares to."""
    items = model.normalized_items if metric == "cosine" else model.item_factors
    scores = items @ np.asarray(vector, dtype=np.float32)
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    return [model.track_ids[i] for i in top[np.argsort(-scores[top], kind="stable")]]


def check_queries(model: Model, count: int, seed: int = 0) -> np.ndarray:
    """A fixed query set for a version: ``count`` of its user vectors, chosen by a seeded draw."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(model.user_ids), size=min(count, len(model.user_ids)), replace=False)
    return model.user_factors[np.sort(rows)]


def recall(expected: Sequence[Sequence[str]], got: Sequence[Sequence[str]]) -> float:
    """Mean share of each exact answer found in the corresponding searched one (recall@k)."""
    shares = [len(set(e) & set(g)) / len(e) for e, g in zip(expected, got, strict=True) if e]
    return float(np.mean(shares)) if shares else 1.0


def recall_by_score(model: Model, queries: np.ndarray, got: Sequence[Sequence[str]], k: int) -> float:
    """Recall@``k`` that counts ties: a returned item is right when its true score reaches the true
    ``k``-th best score (within float32 rounding). Items with equal scores (tracks with the same
    vector, common in a small or young model) may come back in any order from an exact index, so
    comparing id sets would fail a flat index that is, by construction, exact."""
    shares = []
    for query, answer in zip(queries, got, strict=True):
        scores = model.item_factors @ np.asarray(query, dtype=np.float32)
        want = min(k, len(scores))
        if want == 0:
            continue
        kth = -float(np.partition(-scores, want - 1)[want - 1])
        floor = kth - 1e-4 * max(1.0, abs(kth))
        rows = [model.track_index[t] for t in dict.fromkeys(answer[:want]) if t in model.track_index]
        shares.append(sum(1 for r in rows if scores[r] >= floor) / want)
    return float(np.mean(shares)) if shares else 1.0


class ItemIndex(Protocol):
    """Where serving searches item vectors: one process, or the ``RecShard`` actors."""

    async def prepare(self, model: Model, artefact: str) -> float:
        """Load ``model`` (stored at ``artefact``) beside the current version; recall@10 against exact search."""
        ...

    async def search(self, model: Model, artefact: str, vector: np.ndarray, k: int, exclude: Collection[str],
                     metric: Metric) -> Answer:
        ...


async def measured_recall(index: ItemIndex, model: Model, artefact: str, queries: np.ndarray, k: int = 10) -> float:
    """Recall@``k`` of ``index`` against exact search over ``queries`` (the check before a swap)."""
    got = await asyncio.gather(*(index.search(model, artefact, q, k, (), "dot") for q in queries))
    return recall_by_score(model, queries, [[t for t, _ in a.hits] for a in got], k)


class LocalIndex:
    """The whole catalogue as one partition in this process (no Ray): tests, tools, the bench's baseline."""

    def __init__(self, hnsw_min_items: int = 300_000, search_threads: int = 1, ef_search: int = 200) -> None:
        self.hnsw_min_items = hnsw_min_items
        self.ef_search = ef_search
        set_search_threads(search_threads)
        self._loaded: dict[int, ShardIndex] = {}

    def _index(self, model: Model) -> ShardIndex:
        if model.version not in self._loaded:
            self._loaded = {model.version: ShardIndex.from_model(model, 0, 1, hnsw_min_items=self.hnsw_min_items,
                                                                ef_search=self.ef_search),
                            **{v: i for v, i in self._loaded.items() if v > model.version - 2}}
        return self._loaded[model.version]

    async def prepare(self, model: Model, artefact: str) -> float:
        await asyncio.to_thread(self._index, model)
        return await measured_recall(self, model, artefact, check_queries(model, 32))

    async def search(self, model: Model, artefact: str, vector: np.ndarray, k: int, exclude: Collection[str],
                     metric: Metric) -> Answer:
        return Answer(self._index(model).search(vector, k, exclude, metric), 1, 1)
