"""The collaborative model: implicit-feedback ALS over the interaction table, and its artefact.

``train`` fits ``implicit``'s ALS (Hu, Koren and Volinsky 2008: confidence-weighted least squares) on
a users × tracks matrix of signed confidences (``ml.signals.confidence``: a skip-dominated row is a
negative entry, which implicit reads as preference 0 with that confidence). The result, a ``Model``,
is plain numpy plus the id lists, saved as one ``.npz`` (no pickle) so any process can load a version
from the object store.

At query time ``Model.fold_in`` recomputes one user's vector from their current interactions with
implicit's ``recalculate_user`` against the fixed item factors: a play made a second ago moves the feed
without waiting for the next training. ``Model.because`` names the interaction that contributes most
to an item's score (implicit's ``explain``), which becomes the reason shown with a recommendation.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from ml.content import ContentMap, blend
from verseflow.settings import Settings


@dataclass
class Model:
    """One trained version: user and item factors with the ids they stand for, and item popularity."""

    version: int
    user_ids: list[str]
    track_ids: list[str]
    user_factors: np.ndarray
    item_factors: np.ndarray
    popularity: np.ndarray  # summed positive confidence per item: the cold-start ranking
    regularization: float
    #: listeners with positive evidence per item (0: a track known only by its sound); None in old artefacts
    evidence: np.ndarray | None = None
    #: the content model fitted with this version (ml/content.py); None without audio embeddings
    content_map: ContentMap | None = None
    _als: AlternatingLeastSquares | None = field(default=None, repr=False)

    @cached_property
    def track_index(self) -> dict[str, int]:
        return {track_id: i for i, track_id in enumerate(self.track_ids)}

    @cached_property
    def normalized_items(self) -> np.ndarray:
        """Item factors of unit length: inner products are cosine similarities (similar tracks)."""
        norms = np.linalg.norm(self.item_factors, axis=1, keepdims=True)
        return self.item_factors / np.maximum(norms, 1e-9)

    @property
    def als(self) -> AlternatingLeastSquares:
        """An implicit ALS object around the stored item factors, for fold-in and explanations."""
        if self._als is None:
            with threadpool_limits(1, "blas"):  # implicit's own threads do the work; BLAS's would contend
                als = AlternatingLeastSquares(factors=self.item_factors.shape[1],
                                              regularization=self.regularization, random_state=0, num_threads=1)
            als.item_factors = self.item_factors
            als.user_factors = self.user_factors
            self._als = als
        return self._als

    def user_row(self, confidences: Iterable[tuple[str, float]]) -> sp.csr_matrix:
        """A 1 × items row of the user's signed confidences; tracks newer than the model are left out."""
        columns, values = [], []
        for track_id, value in confidences:
            column = self.track_index.get(track_id)
            if column is not None and value != 0:
                columns.append(column)
                values.append(value)
        return sp.csr_matrix((np.asarray(values, dtype=np.float32), ([0] * len(columns), columns)),
                             shape=(1, len(self.track_ids)))

    def fold_in(self, row: sp.csr_matrix) -> np.ndarray:
        """The user's vector computed now from ``row`` (implicit's ``recalculate_user``)."""
        return np.asarray(self.als.recalculate_user(0, row), dtype=np.float32).reshape(-1)

    def scores(self, vector: np.ndarray) -> np.ndarray:
        return self.item_factors @ vector

    def because(self, row: sp.csr_matrix, items: Sequence[int]) -> list[int | None]:
        """For each of ``items``, the user's item contributing most to its score (None when nothing
        positive does). One Cholesky factorisation of the user's system serves every item."""
        weights, sources = None, []
        for item in items:
            _, contributions, weights = self.als.explain(0, row, item, user_weights=weights, N=1)
            sources.append(contributions[0][0] if contributions else None)
        return sources

    def similar(self, item: int, count: int) -> list[tuple[int, float]]:
        """Items by cosine similarity of their factors to ``item``'s, itself excluded, best first."""
        similarity = self.normalized_items @ self.normalized_items[item]
        similarity[item] = -np.inf
        count = min(count, len(similarity) - 1)
        if count <= 0:
            return []
        top = np.argpartition(-similarity, count - 1)[:count]
        top = top[np.argsort(-similarity[top], kind="stable")]
        return [(int(i), float(similarity[i])) for i in top]

    def is_cold(self, item: int) -> bool:
        """Whether the item's vector comes from its sound only (nobody had played it at training)."""
        return self.evidence is not None and self.evidence[item] == 0

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        extra: dict[str, np.ndarray] = {}
        if self.evidence is not None:
            extra["evidence"] = self.evidence
        if self.content_map is not None:
            extra.update(content_mean=self.content_map.mean, content_scale=self.content_map.scale,
                         content_weights=self.content_map.weights)
        np.savez(buffer, version=np.int64(self.version), user_ids=np.asarray(self.user_ids, dtype="U36"),
                 track_ids=np.asarray(self.track_ids, dtype="U36"), user_factors=self.user_factors,
                 item_factors=self.item_factors, popularity=self.popularity,
                 regularization=np.float64(self.regularization), **extra)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Model:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            content = (ContentMap(arrays["content_mean"], arrays["content_scale"], arrays["content_weights"])
                       if "content_weights" in arrays else None)
            return cls(version=int(arrays["version"]), user_ids=arrays["user_ids"].tolist(),
                       track_ids=arrays["track_ids"].tolist(), user_factors=arrays["user_factors"],
                       item_factors=arrays["item_factors"], popularity=arrays["popularity"],
                       regularization=float(arrays["regularization"]),
                       evidence=arrays["evidence"] if "evidence" in arrays else None, content_map=content)


def build_matrix(entries: Sequence[tuple[str, str, float]]) -> tuple[list[str], list[str], sp.csr_matrix]:
    """Users, tracks (both in first-seen order) and the users × tracks matrix of (user, track, confidence)."""
    users: dict[str, int] = {}
    tracks: dict[str, int] = {}
    rows, columns, values = [], [], []
    for user_id, track_id, value in entries:
        if value == 0:
            continue
        rows.append(users.setdefault(user_id, len(users)))
        columns.append(tracks.setdefault(track_id, len(tracks)))
        values.append(value)
    matrix = sp.csr_matrix((np.asarray(values, dtype=np.float32), (rows, columns)),
                           shape=(len(users), len(tracks)))
    matrix.sum_duplicates()
    return list(users), list(tracks), matrix


def train(entries: Sequence[tuple[str, str, float]], settings: Settings, *, version: int,
          content: Mapping[str, np.ndarray] | None = None) -> Model:
    """Fit ALS on (user, track, signed confidence) entries; raises ValueError when there is nothing to learn.

    With ``content`` (track id → ``ml.content.content_vector``), a content model is fitted from the played
    tracks' sound to their factors; played tracks get the evidence-weighted blend of both vectors and
    tracks nobody played (in ``content`` only) join the model with the vector their sound predicts."""
    user_ids, track_ids, matrix = build_matrix(entries)
    if matrix.nnz == 0 or not (matrix.data > 0).any():
        raise ValueError("no positive interactions to learn from yet")
    factors = min(settings.rec_factors, max(2, len(track_ids)))
    with threadpool_limits(1, "blas"):  # implicit's advice: its threads, not OpenBLAS's, parallelise the fit
        als = AlternatingLeastSquares(factors=factors, regularization=settings.rec_regularization,
                                      iterations=settings.rec_iterations, random_state=settings.rec_seed,
                                      num_threads=settings.rec_train_threads)
        als.fit(matrix, show_progress=False)
    popularity = np.asarray(matrix.maximum(0).sum(axis=0), dtype=np.float32).reshape(-1)
    evidence = np.asarray((matrix > 0).sum(axis=0), dtype=np.float32).reshape(-1)
    item_factors = np.asarray(als.item_factors, dtype=np.float32)
    content_map = None
    if content:
        item_factors, content_map, track_ids, popularity, evidence = _with_content(
            item_factors, track_ids, popularity, evidence, content, settings)
    return Model(version=version, user_ids=user_ids, track_ids=track_ids,
                 user_factors=np.asarray(als.user_factors, dtype=np.float32), item_factors=item_factors,
                 popularity=popularity, regularization=settings.rec_regularization, evidence=evidence,
                 content_map=content_map)


def _with_content(item_factors: np.ndarray, track_ids: list[str], popularity: np.ndarray, evidence: np.ndarray,
                  content: Mapping[str, np.ndarray], settings: Settings
                  ) -> tuple[np.ndarray, ContentMap | None, list[str], np.ndarray, np.ndarray]:
    """The content model fitted on played tracks with a sound; blended vectors; the cold tracks appended."""
    index = {t: i for i, t in enumerate(track_ids)}
    dims = {len(v) for v in content.values()}
    if len(dims) != 1:  # analyses of different feature sets (a retrained genre model): keep the common newest
        common = max(dims, key=lambda d: sum(1 for v in content.values() if len(v) == d))
        content = {t: v for t, v in content.items() if len(v) == common}
    warm = [t for t in content if t in index and evidence[index[t]] > 0]
    if len(warm) < settings.rec_content_min_items:
        return item_factors, None, track_ids, popularity, evidence
    rows = [index[t] for t in warm]
    content_map = ContentMap.fit(np.stack([content[t] for t in warm]), item_factors[rows],
                                 settings.rec_content_regularization)
    blended = item_factors.copy()
    blended[rows] = blend(item_factors[rows], content_map.predict(np.stack([content[t] for t in warm])),
                          evidence[rows], settings.rec_blend_evidence)
    cold = [t for t in content if t not in index]
    if cold:
        blended = np.vstack([blended, content_map.predict(np.stack([content[t] for t in cold]))])
        popularity = np.concatenate([popularity, np.zeros(len(cold), dtype=np.float32)])
        evidence = np.concatenate([evidence, np.zeros(len(cold), dtype=np.float32)])
    return blended, content_map, track_ids + cold, popularity, evidence
