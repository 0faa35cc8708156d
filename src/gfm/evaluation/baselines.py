"""Baselines scored in the same harness and split as the trained models.

* :class:`PopularityScorer`: distinct history users per item.
* :class:`ItemKNNScorer`: item-item co-occurrence kNN with shrunk cosine
  similarity, from history items of any type to the product's items.
* :class:`EASEScorer`: EASE, the closed-form linear item-item model of
  Steck, "Embarrassingly Shallow Autoencoders for Sparse Data" (WWW 2019).
* :class:`EmbeddingKNNScorer`: a user is the mean of the item embeddings of
  their history, and items rank by cosine similarity to it (LLM-kNN with
  the LLM features, HGNN-only with the HGNN embeddings).

A user whose history gives a baseline nothing to rank by gets the
popularity ranking instead of tied scores, the usual fallback of these
methods. That is a user without history the baseline reads, or one whose
scores are 0 on every candidate outside their history (history items
without kNN neighbours, EASE items that co-occur with nothing). Each
baseline counts those users in ``fallback_users``.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from gfm.evaluation.context import EvaluationContext

logger = logging.getLogger(__name__)


class _FallbackCounter:
    """Popularity fallback for users with no usable history, counted."""

    def __init__(self) -> None:
        self.fallback_users = 0
        self._popularity = np.zeros(0, dtype=np.float32)

    def _set_popularity(self, context: EvaluationContext) -> None:
        peak = max(float(context.popularity.max()), 1.0)
        self._popularity = (context.popularity / peak).astype(np.float32)
        self.fallback_users = 0

    def _apply_fallback(self, scores: np.ndarray, unusable: np.ndarray) -> np.ndarray:
        if unusable.any():
            scores[unusable] = self._popularity
            self.fallback_users += int(unusable.sum())
        return scores


def _zero_rows(scores: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
    """Return ``[B]`` True where a row scores 0 on every column outside the history.

    The harness removes history items, so such a row would rank the user's
    candidates by the tie order alone. A row whose columns are all history
    items counts too.

    Args:
        scores: ``[B, columns]`` scores.
        history: ``[B, columns]`` CSR, nonzero on each user's history items.
    """
    candidates = history.toarray() == 0
    return ~((scores != 0) & candidates).any(axis=1)


class PopularityScorer:
    """Rank every user's candidates by the number of distinct history users."""

    def __init__(self, name: str = "popularity") -> None:
        self.name = name
        self._scores = np.zeros(0, dtype=np.float32)

    def fit(self, context: EvaluationContext) -> None:
        self._scores = context.popularity.astype(np.float32)

    def score(self, user_ids: list[str]) -> np.ndarray:
        return np.tile(self._scores, (len(user_ids), 1))


class ItemKNNScorer(_FallbackCounter):
    """Item-item kNN over co-occurrence in user histories.

    The similarity of history item ``i`` (any type) and candidate ``j`` is
    ``c_ij / (sqrt(n_i * n_j) + shrinkage)`` with ``c_ij`` the users who
    have both and ``n_i`` the users who have ``i``. Each history item keeps
    its ``neighbors`` most similar candidates, and a user's score for ``j``
    is the sum of the similarities of their history items to ``j``.

    Args:
        neighbors: candidates kept per history item; default from the
            context's ``knn_neighbors``.
        shrinkage: added to the denominator; default ``knn_shrinkage``.
        name: the name in reports.
    """

    def __init__(self, neighbors: int | None = None, shrinkage: float | None = None,
                 name: str = "item-knn") -> None:
        super().__init__()
        if neighbors is not None and (not isinstance(neighbors, int) or neighbors < 1):
            raise ValueError(f"neighbors must be a positive integer or None, got "
                             f"{neighbors!r}")
        if shrinkage is not None and shrinkage < 0:
            raise ValueError(f"shrinkage must be >= 0 or None, got {shrinkage!r}")
        self.name = name
        self.neighbors = neighbors
        self.shrinkage = shrinkage
        self._context: EvaluationContext | None = None
        self._similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, context: EvaluationContext) -> None:
        started = time.monotonic()
        neighbors = (context.config.knn_neighbors if self.neighbors is None
                     else self.neighbors)
        shrinkage = (context.config.knn_shrinkage if self.shrinkage is None
                     else self.shrinkage)
        self._context = context
        self._set_popularity(context)

        binary = (context.history > 0).astype(np.float32).tocsc()
        product = binary[:, context.product_columns]
        co_counts = (binary.T @ product).tocsr()
        users_per_item = np.asarray(binary.sum(axis=0)).ravel()
        users_per_candidate = users_per_item[context.product_columns]

        co_counts = co_counts.tocoo()
        same_item = context.product_columns[co_counts.col] == co_counts.row
        denominator = (np.sqrt(users_per_item[co_counts.row]
                               * users_per_candidate[co_counts.col]) + shrinkage)
        values = np.where(same_item, 0.0, co_counts.data / denominator).astype(np.float32)
        similarity = sp.csr_matrix((values, (co_counts.row, co_counts.col)),
                                   shape=co_counts.shape)
        similarity.eliminate_zeros()
        self._similarity = _keep_top_per_row(similarity, neighbors)
        logger.info(
            "item-knn fitted for product %s: %d similarities kept (%d per history "
            "item at most) in %.1f s", context.product, self._similarity.nnz,
            neighbors, time.monotonic() - started,
        )

    def score(self, user_ids: list[str]) -> np.ndarray:
        context = _require_fitted(self.name, self._context)
        rows = context.user_rows(user_ids)
        history = (context.history[rows] > 0).astype(np.float32)
        scores = np.asarray((history @ self._similarity).todense(), dtype=np.float32)
        # Without history, or with history items that have no neighbour
        # outside the history, every candidate scores 0.
        return self._apply_fallback(scores, _zero_rows(scores, context.product_history(rows)))


class EASEScorer(_FallbackCounter):
    """EASE on the product's most popular items with history.

    With ``X`` the binary user-item history of the kept items, ``P = (X^T X
    + l2 * I)^-1`` and ``B = -P / diag(P)`` with a zero diagonal; a user's
    scores are ``x_u B``. Only items with at least one history interaction
    are kept, because an item nobody consumed has an all-zero column in
    ``X`` and EASE cannot score it. Of those, the ``max_items`` most popular
    are kept. The other items score below every kept item. A user without
    kept history items, or who scores 0 on every kept candidate outside the
    history, gets the popularity ranking.

    After :meth:`fit`, ``excluded_items`` counts the items EASE cannot rank
    above its floor and the test positives on them.

    Args:
        l2: the L2 penalty, positive; default from the context's ``ease_l2``.
        max_items: items kept, at least 1; default ``ease_max_items``.
        name: the name in reports.

    Raises:
        ValueError: if ``l2`` or ``max_items`` is out of range.
    """

    def __init__(self, l2: float | None = None, max_items: int | None = None,
                 name: str = "ease") -> None:
        super().__init__()
        if l2 is not None and not l2 > 0:
            raise ValueError(f"l2 must be positive or None, got {l2!r}")
        if max_items is not None and (not isinstance(max_items, int) or max_items < 1):
            raise ValueError(f"max_items must be a positive integer or None, got "
                             f"{max_items!r}")
        self.name = name
        self.l2 = l2
        self.max_items = max_items
        self.excluded_items: dict[str, int] = {}
        self._context: EvaluationContext | None = None
        self._kept = np.zeros(0, dtype=np.int64)
        self._weights = np.zeros((0, 0), dtype=np.float32)

    def fit(self, context: EvaluationContext) -> None:
        started = time.monotonic()
        l2 = context.config.ease_l2 if self.l2 is None else self.l2
        max_items = context.config.ease_max_items if self.max_items is None else self.max_items
        self._context = context
        self._set_popularity(context)

        seen = np.flatnonzero(context.popularity > 0)
        order = seen[np.argsort(-context.popularity[seen], kind="stable")]
        self._kept = np.sort(order[:max_items])
        self.excluded_items = _excluded_item_counts(context, seen, self._kept, max_items)
        beyond_cap = self.excluded_items["items_beyond_max_items"]
        if beyond_cap:
            logger.warning(
                "ease for product %s keeps the %d most popular of %d items with "
                "history; the other %d score below them, and %d test positives are "
                "on them (raise ease_max_items to keep more, at O(n^3) time)",
                context.product, self._kept.size, seen.size, beyond_cap,
                self.excluded_items["test_positives_beyond_max_items"],
            )

        columns = context.product_columns[self._kept]
        binary = (context.history[:, columns] > 0).astype(np.float32)
        self._weights = _ease_weights(binary, l2)
        logger.info(
            "ease fitted for product %s on %d items (l2=%g) in %.1f s",
            context.product, self._kept.size, l2, time.monotonic() - started,
        )

    def score(self, user_ids: list[str]) -> np.ndarray:
        context = _require_fitted(self.name, self._context)
        rows = context.user_rows(user_ids)
        columns = context.product_columns[self._kept]
        history = (context.history[rows][:, columns] > 0).astype(np.float32)
        kept_scores = np.asarray(history @ self._weights, dtype=np.float32)

        scores = np.empty((len(user_ids), context.num_items), dtype=np.float32)
        floor = kept_scores.min(axis=1, initial=0.0) - 1.0
        scores[:] = floor[:, np.newaxis]
        scores[:, self._kept] = kept_scores
        # Zero scores are judged among the kept items only, because the floor
        # under the other items would make every row look nonzero.
        return self._apply_fallback(scores, _zero_rows(kept_scores, history))


def _excluded_item_counts(context: EvaluationContext, seen: np.ndarray,
                          kept: np.ndarray, max_items: int) -> dict[str, int]:
    """Count the product items EASE leaves out, and the test positives on them."""
    beyond_cap = np.setdiff1d(seen, kept, assume_unique=True)
    without_history = np.setdiff1d(np.arange(context.num_items), seen, assume_unique=True)
    positives = context.positives.tocsc()
    return {
        "max_items": int(max_items),
        "items_with_history": int(seen.size),
        "items_beyond_max_items": int(beyond_cap.size),
        "test_positives_beyond_max_items": int(positives[:, beyond_cap].nnz),
        "items_without_history": int(without_history.size),
        "test_positives_without_history": int(positives[:, without_history].nnz),
        "test_positives": int(positives.nnz),
    }


def _ease_weights(binary: sp.spmatrix, l2: float) -> np.ndarray:
    """Return EASE's ``[n, n]`` float32 weights ``B`` for a binary user-item matrix.

    The Gram matrix plus ``l2 * I`` is symmetric positive definite, so its
    inverse comes from a float32 Cholesky factorization (LAPACK ``spotrf``
    and ``spotri``), about 4 times faster than a float64
    ``numpy.linalg.inv`` (measurements in ``docs/evaluation.md``). Memory
    is about ``2 * 4 n^2`` bytes.

    Raises:
        RuntimeError: if the factorization fails, which needs ``l2`` too
            small for float32 to keep the matrix positive definite.
    """
    gram = (binary.T @ binary).toarray().astype(np.float32, copy=False)
    gram[np.diag_indices_from(gram)] += np.float32(l2)
    # The transpose of a symmetric matrix is the same matrix, and it is
    # Fortran-ordered, so LAPACK factors it in place instead of copying it.
    factor, info = scipy.linalg.lapack.spotrf(gram.T, lower=False, overwrite_a=True)
    if info == 0:
        precision, info = scipy.linalg.lapack.spotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise RuntimeError(
            f"the Cholesky inverse of EASE's {gram.shape[0]}-item Gram matrix failed "
            f"(LAPACK info {info}); raise ease_l2 above {l2:g}"
        )
    _copy_upper_to_lower(precision)
    diagonal = np.diag(precision).copy()
    precision /= -diagonal[np.newaxis, :]
    np.fill_diagonal(precision, 0.0)
    return precision


def _copy_upper_to_lower(matrix: np.ndarray, block: int = 1024) -> None:
    # LAPACK fills only the upper triangle. Copying it in blocks keeps the
    # extra memory to one block instead of another n x n matrix.
    size = matrix.shape[0]
    for start in range(0, size, block):
        stop = min(start + block, size)
        matrix[stop:, start:stop] = matrix[start:stop, stop:].T
        tile = matrix[start:stop, start:stop]
        lower = np.tril_indices(stop - start, -1)
        tile[lower] = tile.T[lower]


class EmbeddingKNNScorer(_FallbackCounter):
    """Rank items by cosine similarity to the mean embedding of a user's history.

    Args:
        embeddings_key: which of the context's embeddings to use (``llm``
            or ``hgnn``).
        name: the name in reports.
        history_types: ``"all"`` averages history items of every type,
            ``"product"`` only the product's; default from the context's
            ``embedding_history_types``.

    Raises:
        ValueError: from :meth:`fit`, if the context lacks the embeddings or
            they miss catalogue items.
    """

    def __init__(self, embeddings_key: str, name: str,
                 history_types: str | None = None) -> None:
        super().__init__()
        self.name = name
        self.embeddings_key = embeddings_key
        self.history_types = history_types
        self._context: EvaluationContext | None = None
        self._item_matrix = np.zeros((0, 0), dtype=np.float32)
        self._candidates = np.zeros((0, 0), dtype=np.float32)
        self._history_columns: np.ndarray | None = None

    def fit(self, context: EvaluationContext) -> None:
        embeddings = context.embeddings.get(self.embeddings_key)
        if embeddings is None:
            raise ValueError(
                f"scorer {self.name!r} needs the {self.embeddings_key!r} item "
                f"embeddings, but the context has only {sorted(context.embeddings)}"
            )
        try:
            matrix = embeddings.select(context.all_item_ids)
        except KeyError as error:
            raise ValueError(
                f"{self.embeddings_key} embeddings must cover every catalogue "
                f"item: {error.args[0]}"
            ) from error
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self._item_matrix = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
        self._candidates = self._item_matrix[context.product_columns]
        history_types = self.history_types or context.config.embedding_history_types
        self._history_columns = (context.product_columns
                                 if history_types == "product" else None)
        self._context = context
        self._set_popularity(context)

    def score(self, user_ids: list[str]) -> np.ndarray:
        context = _require_fitted(self.name, self._context)
        rows = context.user_rows(user_ids)
        history = (context.history[rows] > 0).astype(np.float32)
        item_matrix = self._item_matrix
        if self._history_columns is not None:
            history = history[:, self._history_columns]
            item_matrix = self._candidates
        users = np.asarray(history @ item_matrix, dtype=np.float32)
        norms = np.linalg.norm(users, axis=1, keepdims=True)
        users /= np.maximum(norms, 1e-12)
        scores = users @ self._candidates.T
        # Without history, or with history embeddings that sum to zero, the
        # user vector is zero and every candidate scores 0.
        return self._apply_fallback(scores, _zero_rows(scores, context.product_history(rows)))


def _keep_top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row of a CSR matrix."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    keep = np.zeros(matrix.nnz, dtype=bool)
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        if end - start <= k:
            keep[start:end] = True
            continue
        top = np.argpartition(-matrix.data[start:end], k - 1)[:k]
        keep[start + top] = True
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    return sp.csr_matrix((matrix.data[keep], (rows[keep], matrix.indices[keep])),
                         shape=matrix.shape)


def _require_fitted(name: str, context: EvaluationContext | None) -> EvaluationContext:
    if context is None:
        raise RuntimeError(f"scorer {name!r} was asked to score before fit(context)")
    return context


def make_baselines(names: Iterable[str]) -> list:
    """Return unfitted baselines by name, in the given order.

    Popularity, item-item kNN and EASE need only the history; ``llm-knn``
    and ``hgnn-knn`` need the context's ``llm`` and ``hgnn`` embeddings.

    Raises:
        ValueError: naming a baseline that is not one of these five (the
            ``two-tower`` baseline must be trained, see
            :func:`gfm.evaluation.stage.train_two_tower_baseline`).
    """
    factories = {
        "popularity": PopularityScorer,
        "item-knn": ItemKNNScorer,
        "ease": EASEScorer,
        "llm-knn": lambda: EmbeddingKNNScorer("llm", name="llm-knn"),
        "hgnn-knn": lambda: EmbeddingKNNScorer("hgnn", name="hgnn-knn"),
    }
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; expected some of {sorted(factories)}")
    return [factories[name]() for name in names]
