"""Low-rank EASE (ml/ease.py) against dense EASE, and its half of the served vectors (ml/collaborative.py).
No services: numpy on matrices of a few hundred cells."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ml import collaborative, ease
from verseflow.settings import Settings


def _tastes(users: int = 120, items: int = 60, seed: int = 3) -> sp.csr_matrix:
    """Listeners of three tastes, each playing mostly their taste's items."""
    rng = np.random.default_rng(seed)
    taste = np.arange(items) % 3
    liked = rng.random((users, items)) < np.where(taste[None, :] == (np.arange(users) % 3)[:, None], 0.35, 0.04)
    return sp.csr_matrix(liked.astype(np.float64))


def _unseen_top(scores: np.ndarray, rows: sp.csr_matrix, k: int) -> list[list[int]]:
    scores = np.array(scores, dtype=np.float64)
    scores[rows.nonzero()] = -np.inf
    return [np.argsort(-s, kind="stable")[:k].tolist() for s in scores]


def test_full_rank_scores_equal_dense_ease_on_every_unseen_item():
    rows = _tastes()
    dense = ease.dense_scores(rows, 50.0)
    fitted = ease.fit(rows, 50.0, rank=1000)   # more than min(users, items): every direction kept
    low = fitted.user_vectors(rows) @ fitted.items.T
    unseen = rows.toarray() == 0
    assert np.allclose(low[unseen], dense[unseen], atol=1e-4)
    assert _unseen_top(low, rows, 10) == _unseen_top(dense, rows, 10)


def test_truncated_rank_approaches_dense_eases_top_ten():
    rows = _tastes()
    dense_top = _unseen_top(ease.dense_scores(rows, 50.0), rows, 10)

    def overlap(rank: int) -> float:
        fitted = ease.fit(rows, 50.0, rank=rank)
        assert fitted.items.shape == (60, rank)
        low_top = _unseen_top(fitted.user_vectors(rows) @ fitted.items.T, rows, 10)
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(low_top, dense_top, strict=True)]))

    coarse, fine = overlap(5), overlap(40)
    assert fine >= 0.9 and fine > coarse


def test_evidence_rows_read_positive_evidence_on_a_log_scale():
    confidences = sp.csr_matrix(np.array([[10.0, -5.0, 30.0, 0.0]]))
    assert ease.evidence_rows(confidences, alpha=10.0).toarray().tolist() == [[1.0, 0.0, 2.0, 0.0]]


def _entries(rows: sp.csr_matrix, value: float) -> list[tuple[str, str, float]]:
    coo = rows.tocoo()
    return [(f"u{u}", f"t{i}", value) for u, i in zip(coo.row, coo.col, strict=True)]


def test_served_vectors_are_the_blend_and_fold_in_reproduces_the_user():
    settings = Settings(rec_factors=8, rec_regularization=1.0, rec_train_threads=1, rec_ease_rank=16,
                        rec_ease_regularization=50.0, rec_ease_als_weight=0.5)
    rows = _tastes()
    model = collaborative.train(_entries(rows, settings.rec_alpha), settings, version=1)
    assert model.als_factors == 8 and model.item_factors.shape[1] == 8 + 16
    user = model.user_ids.index("u0")
    row = model.user_row((f"t{i}", settings.rec_alpha) for i in rows[0].indices)
    vector = model.fold_in(row)
    # the EASE half of a folded-in user is their row times P: the same as at training
    assert np.allclose(vector[8:], model.user_factors[user, 8:], atol=1e-5)
    # one inner product = a·ALS + EASE
    als_half = model.als.recalculate_user(0, row)
    expected = 0.5 * (model.item_factors[:, :8] @ als_half) + model.item_factors[:, 8:] @ vector[8:]
    assert np.allclose(model.scores(vector), expected, atol=1e-4)
    # the artefact keeps the EASE half
    again = collaborative.Model.from_bytes(model.to_bytes())
    assert np.allclose(again.fold_in(row), vector, atol=1e-5) and again.ease_als_weight == 0.5


def test_catalogue_above_the_limit_is_served_by_als_alone():
    settings = Settings(rec_factors=8, rec_regularization=1.0, rec_train_threads=1, rec_ease_max_items=59)
    model = collaborative.train(_entries(_tastes(), settings.rec_alpha), settings, version=1)
    assert model.ease_projection is None and model.item_factors.shape[1] == model.als_factors == 8


@pytest.mark.parametrize("weight", [0.25, 1.0])
def test_a_track_known_by_sound_only_scores_as_als_would(weight):
    settings = Settings(rec_factors=8, rec_regularization=1.0, rec_train_threads=1, rec_ease_rank=16,
                        rec_ease_als_weight=weight, rec_content_min_items=8)
    rows = _tastes()
    rng = np.random.default_rng(0)
    sounds = {f"t{i}": rng.normal(size=6).astype(np.float32) + (i % 3) for i in range(60)}
    sounds["new"] = rng.normal(size=6).astype(np.float32)
    model = collaborative.train(_entries(rows, settings.rec_alpha), settings, version=1, content=sounds)
    item = model.track_index["new"]
    assert model.is_cold(item)
    assert not model.item_factors[item, 8:].any() and not model.ease_projection[item].any()
    predicted = model.sound_vector(sounds["new"])
    assert np.allclose(model.item_factors[item], predicted, atol=1e-5)
    row = model.user_row([("t0", settings.rec_alpha), ("t3", settings.rec_alpha)])
    als_vector = model.als.recalculate_user(0, row)
    assert model.scores(model.fold_in(row))[item] == pytest.approx(
        float(model.content_map.predict(sounds["new"])[0] @ als_vector), rel=1e-4)


def test_explanations_name_the_item_implicits_explain_names():
    settings = Settings(rec_factors=8, rec_regularization=1.0, rec_train_threads=1, rec_ease_rank=16)
    rows = _tastes()
    model = collaborative.train(_entries(rows, settings.rec_alpha), settings, version=1)
    row = model.user_row((f"t{i}", settings.rec_alpha) for i in rows[0].indices)
    items = [i for i in range(60) if i not in set(rows[0].indices)][:20]
    one_by_one = [model.als.explain(0, row, item, N=1)[1][0][0] for item in items]
    assert model.because(row, items) == one_by_one
    assert model.because(row, []) == []
