"""The collaborative model: implicit-feedback ALS, and low-rank EASE where the catalogue allows, and its artefact.

``train`` fits ``implicit``'s ALS (Hu, Koren and Volinsky 2008: confidence-weighted least squares) on
a users × tracks matrix of signed confidences (``ml.signals.confidence``: a skip-dominated row is a
negative entry, which implicit reads as preference 0 with that confidence). The result, a ``Model``,
is plain numpy plus the id lists, saved as one ``.npz`` (no pickle) so any process can load a version
from the object store. The content model fitted with it (``ml.content_network``, trained with torch) is
stored there as numpy arrays too: loading and serving a version never imports torch.

Up to ``rec_ease_max_items`` tracks, EASE (``ml.ease``: Steck's closed-form item-item model, kept to
``rec_ease_rank`` directions) is fitted beside ALS and the two are served as one inner product: an item's
vector is ``[v_als, c·Q]`` and a user's ``[a·u_als, x·P / c]``, so a single faiss search ranks by
``a·ALS + EASE`` (``a`` = ``rec_ease_als_weight``; ``c`` gives both halves the same mean length, so cosine
similarity between items weighs them alike). Above the limit the model is ALS alone.

At query time ``Model.fold_in`` recomputes one user's vector from their current interactions with
implicit's ``recalculate_user`` against the fixed item factors, and its EASE half as its row times P:
a play made a second ago moves the feed without waiting for the next training. ``Model.because`` names
the interaction that contributes most to an item's ALS score (implicit's ``explain``), which becomes the
reason shown with a recommendation.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import ThreadpoolController, threadpool_limits

from ml import ease
from ml.content import ContentMap, ContentModel, blend
from ml.content_network import ContentNetwork
from verseflow.settings import Settings

#: Per-request linear algebra (fold-in, explanations) is on 64 × 64 systems: OpenBLAS's threads cost
#: more than they give there (a Cholesky solve measured 0.46 ms with two threads against 0.065 ms with
#: one, idle machine; 2.6 ms under load), and requests already run side by side. A controller made
#: once makes the limit a cheap context (10 µs against 240 µs for ``threadpool_limits``).
_BLAS = ThreadpoolController()


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
    #: the content model fitted with this version (the network of ml/content_network.py, or the ridge
    #: baseline of ml/content.py); None without audio embeddings
    content_map: ContentModel | None = None
    #: the EASE half: P (items × rank) scaled by 1/c; None when the model is ALS alone
    ease_projection: np.ndarray | None = None
    ease_als_weight: float = 1.0   # a: the ALS half's weight in a user's vector
    alpha: float = 1.0             # confidence per unit of evidence at training (EASE reads evidence)
    _als: AlternatingLeastSquares | None = field(default=None, repr=False)

    @property
    def als_factors(self) -> int:
        """How many leading columns of the vectors are ALS factors (the rest are EASE's)."""
        rank = 0 if self.ease_projection is None else self.ease_projection.shape[1]
        return self.item_factors.shape[1] - rank

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
            factors = self.als_factors
            with threadpool_limits(1, "blas"):  # implicit's own threads do the work; BLAS's would contend
                als = AlternatingLeastSquares(factors=factors,
                                              regularization=self.regularization, random_state=0, num_threads=1)
            als.item_factors = np.ascontiguousarray(self.item_factors[:, :factors])
            als.user_factors = np.ascontiguousarray(self.user_factors[:, :factors])
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
        """The user's vector computed now from ``row``: implicit's ``recalculate_user`` for the ALS half,
        the row's evidence times P for the EASE half."""
        with _BLAS.limit(limits=1, user_api="blas"):
            als = np.asarray(self.als.recalculate_user(0, row), dtype=np.float32).reshape(-1)
        if self.ease_projection is None:
            return als
        return np.concatenate([self.ease_als_weight * als,
                               (ease.evidence_rows(row, self.alpha) @ self.ease_projection).reshape(-1)])

    def scores(self, vector: np.ndarray) -> np.ndarray:
        return self.item_factors @ vector

    def because(self, row: sp.csr_matrix, items: Sequence[int]) -> list[int | None]:
        """For each of ``items``, the user's item contributing most to its score (None when the user has
        no item of non-negative confidence): implicit's ``explain`` (Hu, Koren, Volinsky 2008, §5) for
        all items at once. One Cholesky factorisation of the user's system (``explain``'s own, for the
        first item) and one solve for every item: calling ``explain`` per item cost a Python loop over
        the user's history each time, a third of a home-feed request's CPU at a page of 20."""
        if not len(items):
            return []
        als = self.als
        row = row.tocsr()
        confidence = row.data * als.alpha
        liked = row.indices[confidence >= 0]
        if not len(liked):
            return [None] * len(items)
        with _BLAS.limit(limits=1, user_api="blas"):
            _, _, weights = als.explain(0, row, items[0], N=1)
            targets = scipy.linalg.cho_solve(weights, als.item_factors[list(items)].T)  # factors × items
        scores = (als.item_factors[liked] @ targets) * confidence[confidence >= 0][:, None]  # liked × items
        return [int(liked[best]) for best in scores.argmax(axis=0)]

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

    def sound_vector(self, features: np.ndarray) -> np.ndarray | None:
        """A track's vector predicted from its content features (the content model), in this model's
        layout (as a track known only by its sound is stored); None without a content model that fits."""
        if self.content_map is None or len(features) != self.content_map.dimensions:
            return None
        predicted = self.content_map.predict(features)[0]
        if self.ease_projection is None:
            return predicted
        padding = np.zeros(self.ease_projection.shape[1], dtype=np.float32)
        return np.concatenate([predicted / self.ease_als_weight, padding])

    def is_cold(self, item: int) -> bool:
        """Whether the item's vector comes from its sound only (nobody had played it at training)."""
        return self.evidence is not None and self.evidence[item] == 0

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        extra: dict[str, np.ndarray] = {}
        if self.evidence is not None:
            extra["evidence"] = self.evidence
        if self.ease_projection is not None:
            extra.update(ease_projection=self.ease_projection, ease_als_weight=np.float64(self.ease_als_weight))
        if isinstance(self.content_map, ContentNetwork):
            extra.update(self.content_map.to_arrays())
        elif isinstance(self.content_map, ContentMap):
            extra.update(content_mean=self.content_map.mean, content_scale=self.content_map.scale,
                         content_weights=self.content_map.weights)
        np.savez(buffer, version=np.int64(self.version), user_ids=np.asarray(self.user_ids, dtype="U36"),
                 track_ids=np.asarray(self.track_ids, dtype="U36"), user_factors=self.user_factors,
                 item_factors=self.item_factors, popularity=self.popularity,
                 regularization=np.float64(self.regularization), alpha=np.float64(self.alpha), **extra)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Model:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            content: ContentModel | None = ContentNetwork.from_arrays(arrays)
            if content is None and "content_weights" in arrays:   # the ridge baseline, or an older artefact
                content = ContentMap(arrays["content_mean"], arrays["content_scale"], arrays["content_weights"])
            return cls(version=int(arrays["version"]), user_ids=arrays["user_ids"].tolist(),
                       track_ids=arrays["track_ids"].tolist(), user_factors=arrays["user_factors"],
                       item_factors=arrays["item_factors"], popularity=arrays["popularity"],
                       regularization=float(arrays["regularization"]),
                       evidence=arrays["evidence"] if "evidence" in arrays else None, content_map=content,
                       ease_projection=arrays["ease_projection"] if "ease_projection" in arrays else None,
                       ease_als_weight=float(arrays["ease_als_weight"]) if "ease_als_weight" in arrays else 1.0,
                       alpha=float(arrays["alpha"]) if "alpha" in arrays else 1.0)


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
    user_factors = np.asarray(als.user_factors, dtype=np.float32)
    content_map = None
    if content:   # the content model maps sound into the ALS space; tracks known by sound only are appended
        item_factors, content_map, track_ids, popularity, evidence = _with_content(
            item_factors, track_ids, popularity, evidence, content, settings)
    projection = None
    if 0 < matrix.shape[1] <= settings.rec_ease_max_items and settings.rec_ease_rank > 0:
        item_factors, user_factors, projection = _with_ease(matrix, item_factors, user_factors, settings)
    return Model(version=version, user_ids=user_ids, track_ids=track_ids, user_factors=user_factors,
                 item_factors=item_factors, popularity=popularity, regularization=settings.rec_regularization,
                 evidence=evidence, content_map=content_map, ease_projection=projection,
                 ease_als_weight=settings.rec_ease_als_weight, alpha=settings.rec_alpha)


def _with_ease(matrix: sp.csr_matrix, item_factors: np.ndarray, user_factors: np.ndarray, settings: Settings
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ALS vectors with low-rank EASE appended: items ``[v, c·Q]``, users ``[a·u, x·P / c]``, and P / c.

    ``c`` makes the EASE half as long as the ALS half on average (items' cosine weighs both alike). Rows of
    ``item_factors`` past the matrix's columns are tracks known only by their sound: nobody's evidence
    reaches them through EASE, so their EASE half is 0 and their ALS half is divided by ``a``, which
    scores them as ALS alone would, on the scale of the blend."""
    rows = ease.evidence_rows(matrix, settings.rec_alpha)
    fitted = ease.fit(rows, settings.rec_ease_regularization, settings.rec_ease_rank, settings.rec_seed)
    played, weight = matrix.shape[1], settings.rec_ease_als_weight
    scale = float(np.linalg.norm(item_factors[:played], axis=1).mean() /
                  max(float(np.linalg.norm(fitted.items, axis=1).mean()), 1e-12))
    sound_only = len(item_factors) - played
    projection = np.vstack([fitted.projection / scale,
                            np.zeros((sound_only, fitted.projection.shape[1]))]).astype(np.float32)
    items = np.vstack([np.hstack([item_factors[:played], scale * fitted.items]),
                       np.hstack([item_factors[played:] / weight, np.zeros((sound_only, fitted.items.shape[1]))])])
    users = np.hstack([weight * user_factors, np.asarray(rows @ projection[:played])])
    return items.astype(np.float32), users.astype(np.float32), projection


def fit_content(features: np.ndarray, factors: np.ndarray, settings: Settings) -> ContentModel:
    """The content model ``rec_content_model`` names, fitted from played tracks' features to their factors."""
    if settings.rec_content_model == "ridge":
        return ContentMap.fit(features, factors, settings.rec_content_regularization)
    return ContentNetwork.fit(features, factors, settings)


def _with_content(item_factors: np.ndarray, track_ids: list[str], popularity: np.ndarray, evidence: np.ndarray,
                  content: Mapping[str, np.ndarray], settings: Settings
                  ) -> tuple[np.ndarray, ContentModel | None, list[str], np.ndarray, np.ndarray]:
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
    content_map = fit_content(np.stack([content[t] for t in warm]), item_factors[rows], settings)
    blended = item_factors.copy()
    blended[rows] = blend(item_factors[rows], content_map.predict(np.stack([content[t] for t in warm])),
                          evidence[rows], settings.rec_blend_evidence)
    cold = [t for t in content if t not in index]
    if cold:
        blended = np.vstack([blended, content_map.predict(np.stack([content[t] for t in cold]))])
        popularity = np.concatenate([popularity, np.zeros(len(cold), dtype=np.float32)])
        evidence = np.concatenate([evidence, np.zeros(len(cold), dtype=np.float32)])
    return blended, content_map, track_ids + cold, popularity, evidence
