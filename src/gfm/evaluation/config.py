"""Settings of the evaluation stage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

HISTORY_PARTS = ("train", "valid")
BASELINE_NAMES = ("popularity", "item-knn", "ease", "llm-knn", "hgnn-knn", "two-tower")


@dataclass
class EvaluationConfig:
    """How test interactions are turned into rankings and metrics.

    Args:
        hit_k: cut-off of the hit rate, ``HR@hit_k``. Default 10.
        ranking_k: cut-off of Recall and NDCG. Default 20.
        coverage_k: cut-off of catalogue coverage: the share of the
            candidate items that appear in at least one evaluated user's top
            ``coverage_k``. Default 100.
        batch_size: users scored per matrix product. Default 256.
        positive_min_weight: minimum ``weight`` of a test interaction that
            counts as a positive. 4.0 keeps MovieLens ratings of 4 and 5,
            and ``None`` keeps every test interaction.
        history_parts: split parts that form the history a user has at test
            time. Every scorer sees this history, and its items are removed
            from the candidates. Default ``("train", "valid")``.
        popularity_tier_shares: cumulative shares of the total popularity
            (distinct history users per item) at which the head tier and the
            torso tier end. Items sorted by popularity fill the head tier up
            to the first share and the torso tier up to the second. The
            rest, unseen items included, form the tail tier. Default
            ``(0.5, 0.8)``.
        tie_break_seed: seed of the random orders that break ties between
            equal scores. Each user's order is drawn from this seed and the
            user id, so it is the same for every scorer and differs between
            users. A non-negative integer. Default 0.
        ease_l2: L2 penalty of EASE (Steck 2019). Default 500.0.
        ease_max_items: EASE keeps only this many of the product's most
            popular items, because it inverts an item-item matrix
            (``O(n^3)`` time, ``8 n^2`` bytes); the other items score below
            every kept item. Default 6000.
        knn_neighbors: neighbours kept per history item by item-item kNN.
            Default 100.
        knn_shrinkage: shrinkage added to the cosine denominator of
            item-item kNN, damping similarities backed by few users.
            Default 10.0.
        embedding_history_types: which history items the embedding kNN
            baselines average: ``"all"`` (every item type, so users cold in
            this product are still scored from their other products) or
            ``"product"``. Default ``"all"``.
        baselines: baselines evaluated beside the given product models, in
            report order, from ``popularity``, ``item-knn``, ``ease``,
            ``llm-knn``, ``hgnn-knn`` and ``two-tower`` (a two-tower model
            trained without HGNN inputs, with the product model's other
            settings). Default all of them.
        num_threads: torch intra-op threads while ranking and scoring
            (restored afterwards); ``None`` keeps torch's setting. Default
            1: ranking is element-wise work on ``[batch_size, num_items]``
            tensors, and with 2 threads on 2 cores shared with other jobs it
            ran 5 to 14 times slower than with 1 (``benchmarks/evaluate.py``,
            ``docs/benchmarks/evaluation.md``).
    """

    hit_k: int = 10
    ranking_k: int = 20
    coverage_k: int = 100
    batch_size: int = 256
    positive_min_weight: float | None = None
    history_parts: tuple[str, ...] = HISTORY_PARTS
    popularity_tier_shares: tuple[float, float] = (0.5, 0.8)
    tie_break_seed: int = 0
    ease_l2: float = 500.0
    ease_max_items: int = 6000
    knn_neighbors: int = 100
    knn_shrinkage: float = 10.0
    embedding_history_types: str = "all"
    baselines: tuple[str, ...] = BASELINE_NAMES
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        self.history_parts = tuple(self.history_parts)
        self.baselines = tuple(self.baselines)
        self.popularity_tier_shares = tuple(float(s) for s in self.popularity_tier_shares)
        for name in ("hit_k", "ranking_k", "coverage_k", "batch_size",
                     "ease_max_items", "knn_neighbors"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        unknown_parts = [p for p in self.history_parts if p not in HISTORY_PARTS]
        if unknown_parts or "train" not in self.history_parts:
            raise ValueError(
                f"history_parts={self.history_parts!r} is invalid: it must contain "
                f"'train' and may add 'valid'"
            )
        shares = self.popularity_tier_shares
        if len(shares) != 2 or not 0.0 < shares[0] < shares[1] < 1.0:
            raise ValueError(
                f"popularity_tier_shares={shares!r} is invalid: give two increasing "
                f"shares strictly between 0 and 1, for example (0.5, 0.8)"
            )

        if (not isinstance(self.tie_break_seed, int) or isinstance(self.tie_break_seed, bool)
                or self.tie_break_seed < 0):
            raise ValueError(f"tie_break_seed must be a non-negative integer, got "
                             f"{self.tie_break_seed!r}")
        if self.ease_l2 <= 0:
            raise ValueError(f"ease_l2 must be positive, got {self.ease_l2!r}")
        if self.knn_shrinkage < 0:
            raise ValueError(f"knn_shrinkage must be >= 0, got {self.knn_shrinkage!r}")
        if self.num_threads is not None and (not isinstance(self.num_threads, int)
                                             or self.num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or null, got "
                             f"{self.num_threads!r}")

        unknown_baselines = [b for b in self.baselines if b not in BASELINE_NAMES]
        if unknown_baselines or len(set(self.baselines)) != len(self.baselines):
            raise ValueError(
                f"baselines={list(self.baselines)} is invalid: name each at most "
                f"once, from {list(BASELINE_NAMES)}"
            )
        if self.embedding_history_types not in ("all", "product"):
            raise ValueError(
                f"embedding_history_types={self.embedding_history_types!r} is "
                f"invalid; use 'all' or 'product'"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "EvaluationConfig":
        """Build settings from a mapping such as a YAML section.

        Raises:
            ValueError: naming any key that is not a setting.
        """
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown evaluation settings {unknown}; known settings are "
                f"{sorted(known)}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-ready values."""
        values = dataclasses.asdict(self)
        values["history_parts"] = list(self.history_parts)
        values["baselines"] = list(self.baselines)
        values["popularity_tier_shares"] = list(self.popularity_tier_shares)
        return values
