"""The interface every model and baseline implements to be evaluated."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from gfm.evaluation.context import EvaluationContext


@runtime_checkable
class Scorer(Protocol):
    """A model that scores a product's candidate items for users.

    The harness calls :meth:`fit` once per context, then :meth:`score` on
    batches of the context's evaluated users. Higher scores rank first. The
    harness removes each user's history items itself, so a scorer need not.
    """

    name: str

    def fit(self, context: EvaluationContext) -> None:
        """Prepare to score the context's product; may train on its history."""
        ...

    def score(self, user_ids: list[str]) -> np.ndarray:
        """Return ``[len(user_ids), context.num_items]`` finite scores.

        Columns follow ``context.item_ids``.
        """
        ...


def check_scores(name: str, scores: np.ndarray, num_users: int, num_items: int) -> None:
    """Raise ValueError unless ``scores`` is a finite ``[num_users, num_items]`` array.

    Args:
        name: the scorer's name, for the message.
        scores: what the scorer returned.
        num_users: users asked for.
        num_items: candidate items of the product.
    """
    shape = getattr(scores, "shape", None)
    if shape != (num_users, num_items):
        raise ValueError(
            f"scorer {name!r} returned scores of shape {shape}, expected "
            f"({num_users}, {num_items}) = [users, product items]"
        )
    if not np.all(np.isfinite(scores)):
        bad = int(np.count_nonzero(~np.isfinite(scores)))
        raise ValueError(
            f"scorer {name!r} returned {bad} scores that are NaN or infinite; "
            f"scores must be finite, and the harness removes history items itself"
        )
