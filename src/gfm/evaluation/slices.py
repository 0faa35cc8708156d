"""Slices of an evaluation: which users a figure averages and what counts as a hit.

A *view* fixes the ranking: its candidate items and which test positives
count. A *slice* is a view plus a group of users; each figure of a slice
averages the users of the group who have at least one positive in the view.

Views:

* ``full``: every product item is a candidate, every positive counts.
* ``cold``: every product item is a candidate, only positives on items of
  the cold-item split count (does a new item reach the top among all?).
* ``cold_only``: only cold items are candidates and count (which new item?).
  Popularity has no signal here, because cold items have no history.
* ``head``, ``torso``, ``tail``: every item is a candidate; only positives
  on items of that popularity tier count.

Slices:

* ``all``: every evaluated user.
* ``warm``: users with history in this product.
* ``cross_product_cold``: no history in this product, history in another.
* ``new_users``: no history at all.
* ``cold_items`` (view ``cold``) and ``cold_items_among_cold`` (view
  ``cold_only``): every evaluated user.
* ``popularity_head``, ``popularity_torso``, ``popularity_tail``: every
  evaluated user, in the tier's view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gfm.evaluation.context import EvaluationContext

TIERS = ("head", "torso", "tail")


@dataclass(frozen=True)
class View:
    """Candidates and counted positives of one ranking.

    Attributes:
        name: view name.
        candidates: ``[num_items]`` bool candidate set, None for all items.
        counted: ``[num_items]`` bool items whose positives count, None for all.
    """

    name: str
    candidates: np.ndarray | None
    counted: np.ndarray | None


@dataclass(frozen=True)
class Slice:
    """A group of evaluated users in one view.

    Attributes:
        name: slice name, as in reports.
        view: name of the view.
        users: ``[num_eval_users]`` bool, the group.
        description: one line for reports.
    """

    name: str
    view: str
    users: np.ndarray
    description: str


def popularity_tiers(popularity: np.ndarray, shares: tuple[float, float]) -> np.ndarray:
    """Assign each item to a tier by its share of the total popularity.

    Items sorted by decreasing popularity belong to the head while the
    cumulative share of popularity before them is below ``shares[0]``, to
    the torso while it is below ``shares[1]``, and to the tail after that.
    Items without history are always in the tail.

    Args:
        popularity: ``[num_items]`` distinct history users per item, so a
            user's repeated interactions with an item count once.
        shares: cumulative shares where head and torso end.

    Returns:
        ``[num_items]`` int8 tier index into :data:`TIERS`.
    """
    tiers = np.full(popularity.shape, 2, dtype=np.int8)
    total = float(popularity.sum())
    if total == 0:
        return tiers
    order = np.argsort(-popularity, kind="stable")
    before = (np.cumsum(popularity[order]) - popularity[order]) / total
    sorted_tiers = np.where(before < shares[0], 0, np.where(before < shares[1], 1, 2))
    sorted_tiers[popularity[order] == 0] = 2
    tiers[order] = sorted_tiers
    return tiers


def build_views(context: EvaluationContext) -> dict[str, View]:
    """Return the views of a context by name; ``cold`` views only with cold items."""
    views = {"full": View("full", None, None)}
    if context.cold_items.any():
        views["cold"] = View("cold", None, context.cold_items)
        views["cold_only"] = View("cold_only", context.cold_items, context.cold_items)
    tiers = popularity_tiers(context.popularity, context.config.popularity_tier_shares)
    for index, tier in enumerate(TIERS):
        views[tier] = View(tier, None, tiers == index)
    return views


def build_slices(context: EvaluationContext, views: dict[str, View]) -> list[Slice]:
    """Return the slices of a context; each names a view from ``views``."""
    rows = context.eval_user_rows
    in_product = np.asarray(context.product_history(rows).sum(axis=1)).ravel() > 0
    anywhere = np.asarray(context.history[rows].sum(axis=1)).ravel() > 0
    everyone = np.ones(rows.shape, dtype=bool)

    slices = [
        Slice("all", "full", everyone, "every evaluated user"),
        Slice("warm", "full", in_product, "users with history in this product"),
        Slice("cross_product_cold", "full", anywhere & ~in_product,
              "users without history in this product but with history in another"),
        Slice("new_users", "full", ~anywhere, "users without any history"),
    ]
    if "cold" in views:
        slices.append(Slice("cold_items", "cold", everyone,
                            "positives on cold items, ranked among all items"))
        slices.append(Slice("cold_items_among_cold", "cold_only", everyone,
                            "positives on cold items, ranked among cold items"))
    for tier in TIERS:
        slices.append(Slice(f"popularity_{tier}", tier, everyone,
                            f"positives on {tier} items of the popularity tiers"))
    return slices
