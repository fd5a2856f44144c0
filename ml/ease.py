"""Low-rank EASE: Steck's closed-form item-item model (WWW 2019) as user and item vectors for faiss.

EASE scores a user's row x with B = I − G⁻¹·diag(1/diag(G⁻¹)), G = XᵀX + λI. Write X's SVD as
X = U S Vᵀ, so XᵀX = V diag(s) Vᵀ (s = singular values squared) and

    G⁻¹ = (I − V diag(w) Vᵀ) / λ,    w = s / (s + λ).

Off the diagonal only the second term is left, so for an item j the user has not interacted with
(the only items a feed ranks) ``(x·B)_j = x·V diag(w) · V_jᵀ / d_j`` with d_j = λ·G⁻¹_jj =
1 − Σ_i V_ji² w_i. That is an inner product of a user vector ``x·P`` (P = V diag(w)) and an item vector
``Q_j = V_j / d_j``: the same scores as dense EASE for every unseen item, exactly when all singular
vectors are kept (the rank of X is at most min(users, items)), approximately with the top ``rank``
(the dropped directions carry the smallest weights w). No items × items matrix is ever formed: the
cost is one truncated SVD of the sparse interaction matrix, and fold-in is one sparse row times P,
so a play counts at once.

The input is each row's positive evidence on a log scale (``evidence_rows``): one completed play is 1,
a track played fifty times does not outweigh the rest of a listener's row fifty to one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

#: above this many matrix cells the SVD is truncated (ARPACK) instead of dense
DENSE_SVD_MAX_CELLS = 20_000_000


@dataclass(frozen=True)
class LowRankEase:
    """P (items × rank: a user's vector is their evidence row times P) and Q (items × rank: item vectors)."""

    projection: np.ndarray
    items: np.ndarray

    def user_vectors(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray(rows @ self.projection, dtype=np.float32)


def evidence_rows(confidences: sp.csr_matrix, alpha: float) -> sp.csr_matrix:
    """EASE's input from signed ALS confidences (``ml.signals.confidence``: α × evidence): log2(1 + evidence)
    of the positive entries; dislikes and nothing are 0."""
    rows = confidences.maximum(0).tocsr().astype(np.float32)   # float32 like P: no upcast copy of P per fold-in
    rows.data = np.log2(1.0 + rows.data / np.float32(alpha))
    rows.eliminate_zeros()
    return rows


def _top_singular(matrix: sp.csr_matrix, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``rank`` largest singular values of ``matrix`` (squared) and their right singular vectors."""
    matrix = matrix.astype(np.float64)
    if matrix.shape[0] * matrix.shape[1] <= DENSE_SVD_MAX_CELLS or rank >= min(matrix.shape) - 1:
        _, values, vt = np.linalg.svd(matrix.toarray(), full_matrices=False)
        values, vt = values[:rank], vt[:rank]
    else:
        _, values, vt = svds(matrix, k=rank, random_state=seed)
    keep = values > 1e-6 * max(values.max(initial=0.0), 1e-12)
    return values[keep] ** 2, vt[keep].T


def fit(rows: sp.csr_matrix, regularization: float, rank: int, seed: int = 0) -> LowRankEase:
    """EASE with L2 penalty ``regularization`` (Steck's λ) on ``rows`` (users × items), kept to ``rank``."""
    squared, vectors = _top_singular(rows, rank, seed)
    weights = squared / (squared + regularization)
    diagonal = 1.0 - (vectors ** 2) @ weights   # λ·diag(G⁻¹), from the kept directions: in (0, 1]
    return LowRankEase(projection=(vectors * weights).astype(np.float32),
                       items=(vectors / np.maximum(diagonal, 1e-9)[:, None]).astype(np.float32))


def dense_scores(rows: sp.csr_matrix, regularization: float) -> np.ndarray:
    """Dense EASE's x·B for every row (items × items inverse): the reference the low-rank form matches."""
    gram = (rows.T @ rows).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += regularization
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    weights[np.diag_indices_from(weights)] = 0.0
    return np.asarray(rows @ weights)
