"""Adapter that scores a trained two-tower :class:`~gfm.twotower.ProductModel`.

The same adapter evaluates 2T-HGNN (a model trained with HGNN inputs) and
the two-tower without HGNN inputs; only the model and the name differ. A
user's input is their whole history in the context (every item type) and
their user features, exactly what the serving path passes.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from gfm.evaluation.context import EvaluationContext

logger = logging.getLogger(__name__)

TWO_TOWER_HGNN = "2t-hgnn"
TWO_TOWER_NO_HGNN = "two-tower"


def two_tower_name(model: Any) -> str:
    """Return the report name of a product model: 2T-HGNN when it uses HGNN inputs."""
    return TWO_TOWER_HGNN if model.config.use_hgnn else TWO_TOWER_NO_HGNN


class ProductModelScorer:
    """Score a product's candidates with a trained two-tower model.

    Scores are the dot products of the user tower's and the item tower's
    unit-norm outputs. Candidates the model has no item vector for score
    below every other item and are counted in ``missing_items``.

    Args:
        model: a ``gfm.twotower.ProductModel`` (``item_ids``,
            ``item_vectors()``, ``user_vectors(histories, user_features)``).
        name: the name in reports; default from :func:`two_tower_name`.

    Raises:
        ValueError: from :meth:`fit`, if the model belongs to another product
            or knows none of the candidates.
    """

    def __init__(self, model: Any, name: str | None = None) -> None:
        self.model = model
        self.name = name or two_tower_name(model)
        self.missing_items = 0
        self._context: EvaluationContext | None = None
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._present = np.zeros(0, dtype=bool)
        self._features: dict[str, dict[str, Any]] | None = None

    def fit(self, context: EvaluationContext) -> None:
        model_types = set(getattr(self.model, "item_types", context.item_types))
        if not model_types & set(context.item_types):
            raise ValueError(
                f"scorer {self.name!r} was trained for item types {sorted(model_types)}, "
                f"but product {context.product!r} has {context.item_types}"
            )
        index = {item_id: row for row, item_id in enumerate(self.model.item_ids)}
        rows = np.asarray([index.get(i, -1) for i in context.item_ids], dtype=np.int64)
        self._present = rows >= 0
        self.missing_items = int((~self._present).sum())
        if not self._present.any():
            raise ValueError(
                f"scorer {self.name!r} has item vectors for none of the "
                f"{context.num_items} candidates of product {context.product!r}"
            )
        if self.missing_items:
            logger.warning(
                "%s has no item vector for %d of %d candidates of product %s; they "
                "rank last", self.name, self.missing_items, context.num_items,
                context.product,
            )
        vectors = np.asarray(self.model.item_vectors(), dtype=np.float32)
        self._vectors = np.zeros((context.num_items, vectors.shape[1]), dtype=np.float32)
        self._vectors[self._present] = vectors[rows[self._present]]
        self._features = _user_features(context)
        self._context = context

    def score(self, user_ids: list[str]) -> np.ndarray:
        if self._context is None:
            raise RuntimeError(f"scorer {self.name!r} was asked to score before fit(context)")
        context = self._context
        history = context.history[context.user_rows(user_ids)]
        histories = [
            [context.all_item_ids[c] for c in history.indices[history.indptr[r]:
                                                              history.indptr[r + 1]]]
            for r in range(len(user_ids))
        ]
        features = None
        if self._features is not None:
            features = [self._features.get(u) for u in user_ids]
        users = np.asarray(self.model.user_vectors(histories, features), dtype=np.float32)
        scores = users @ self._vectors.T
        if self.missing_items:
            floor = scores[:, self._present].min(axis=1) - 1.0
            scores[:, ~self._present] = floor[:, np.newaxis]
        return scores


def _user_features(context: EvaluationContext) -> dict[str, dict[str, Any]] | None:
    if context.users is None or "user_id" not in context.users.columns:
        return None
    users = context.users.assign(user_id=context.users["user_id"].astype(str))
    records = users.set_index("user_id").to_dict(orient="index")
    return {user_id: dict(values) for user_id, values in records.items()}
