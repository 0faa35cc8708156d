"""Baselines scored in the same harness and split as the trained models.

* :class:`PopularityScorer`: distinct history users per item.
* :class:`ItemKNNScorer`: item-item co-occurrence kNN with shrunk cosine
  similarity, from history items of any type to the product's items.
* :class:`EASEScorer`: EASE, the closed-form linear item-item model of
  Steck, "Embarrassingly Shallow Autoencoders for Sparse Data" (WWW 2019).
* :class:`EmbeddingKNNScorer`: a user is the mean of the item embeddings of
  their history, and items rank by cosine similarity to it (LLM-kNN with
  the LLM features, HGNN-only with the HGNN embeddings).

A user whose history holds nothing a baseline can use gets the popularity
ranking instead of constant scores, the usual fallback of these methods;
each baseline counts those users in ``fallback_users``.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable

import numpy as np
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

    def _apply_fallback(self, scores: np.ndarray, empty: np.ndarray) -> np.ndarray:
        if empty.any():
            scores[empty] = self._popularity
            self.fallback_users += int(empty.sum())
        return scores


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
        self.name = name
        self.neighbors = neighbors
        self.shrinkage = shrinkage
        self._context: EvaluationContext | None = None
        self._similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, context: EvaluationContext) -> None:
        started = time.monotonic()
        neighbors = self.neighbors or context.config.knn_neighbors
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
        history = (context.history[context.user_rows(user_ids)] > 0).astype(np.float32)
        scores = np.asarray((history @ self._similarity).todense(), dtype=np.float32)
        empty = np.asarray(history.sum(axis=1)).ravel() == 0
        return self._apply_fallback(scores, empty)


class EASEScorer(_FallbackCounter):
    """EASE on the product's most popular items.

    With ``X`` the binary user-item history of the kept items, ``P = (X^T X
    + l2 * I)^-1`` and ``B = -P / diag(P)`` with a zero diagonal; a user's
    scores are ``x_u B``. Items beyond ``max_items`` score below every kept
    item, and a user without kept history items gets the popularity ranking.

    Args:
        l2: the L2 penalty; default from the context's ``ease_l2``.
        max_items: items kept; default ``ease_max_items``.
        name: the name in reports.
    """

    def __init__(self, l2: float | None = None, max_items: int | None = None,
                 name: str = "ease") -> None:
        super().__init__()
        self.name = name
        self.l2 = l2
        self.max_items = max_items
        self._context: EvaluationContext | None = None
        self._kept = np.zeros(0, dtype=np.int64)
        self._weights = np.zeros((0, 0), dtype=np.float32)

    def fit(self, context: EvaluationContext) -> None:
        started = time.monotonic()
        l2 = self.l2 or context.config.ease_l2
        max_items = self.max_items or context.config.ease_max_items
        self._context = context
        self._set_popularity(context)

        seen = np.flatnonzero(context.popularity > 0)
        order = seen[np.argsort(-context.popularity[seen], kind="stable")]
        self._kept = np.sort(order[:max_items])
        dropped = int(seen.size - self._kept.size)
        if dropped:
            logger.warning(
                "ease for product %s keeps the %d most popular of %d items with "
                "history; the other %d score below them (raise ease_max_items to "
                "keep more, at O(n^3) time)", context.product, self._kept.size,
                seen.size, dropped,
            )

        columns = context.product_columns[self._kept]
        binary = (context.history[:, columns] > 0).astype(np.float64)
        gram = np.asarray((binary.T @ binary).todense())
        gram[np.diag_indices_from(gram)] += l2
        precision = np.linalg.inv(gram)
        weights = -precision / np.diag(precision)[np.newaxis, :]
        weights[np.diag_indices_from(weights)] = 0.0
        self._weights = weights.astype(np.float32)
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
        empty = np.asarray(history.sum(axis=1)).ravel() == 0
        return self._apply_fallback(scores, empty)


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
        history = (context.history[context.user_rows(user_ids)] > 0).astype(np.float32)
        item_matrix = self._item_matrix
        if self._history_columns is not None:
            history = history[:, self._history_columns]
            item_matrix = self._candidates
        users = np.asarray(history @ item_matrix, dtype=np.float32)
        norms = np.linalg.norm(users, axis=1, keepdims=True)
        users /= np.maximum(norms, 1e-12)
        scores = users @ self._candidates.T
        empty = np.asarray(history.sum(axis=1)).ravel() == 0
        return self._apply_fallback(scores, empty)


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
