"""Top-k retrieval over one product's item matrix.

:class:`ProductCatalog` contains what scoring needs, built once when a bundle
loads: the item matrix as a torch tensor, a boolean mask per item type, the
popularity order for the fallback, and optionally an :class:`IVFIndex`.
A request's instances for one product are scored together with one matrix
product ``[batch, dim] @ [dim, num_items]`` and one ``torch.topk``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gfm.serving.ann import IVFIndex

logger = logging.getLogger(__name__)

# Maximum number of float32 scores held at once (32 MiB): a batch over a large
# catalog is scored in chunks of rows so a request cannot allocate
# ``max_instances * num_items`` floats.
MAX_SCORES_PER_CHUNK = 8 * 1024 * 1024

# The IVF index returns this many candidates per requested item, so that
# enough remain after dropping the user's consumed items.
ANN_CANDIDATE_FACTOR = 2


@dataclass
class Ranking:
    """Items of one instance, best first.

    Args:
        item_ids: ``[n]`` item ids, ``n <= k``; fewer than ``k`` only when
            fewer items pass the filters.
        scores: ``[n]`` inner products of user and item vectors, or training
            counts for the popularity fallback.
        excluded: distinct consumed items of this product that were dropped.
        exact: whether exact search produced the ranking (``False`` when the
            IVF index did).
    """

    item_ids: list[str]
    scores: list[float]
    excluded: int
    exact: bool = True


class ProductCatalog:
    """The candidate items of one product, ready for scoring.

    Args:
        name: product name.
        item_ids: ``[num_items]`` unique item ids.
        item_types: ``[num_items]`` the type of each item.
        item_vectors: ``[num_items, dim]`` float32, L2-normalized.
        popularity: ``[num_items]`` training interaction counts.
        ann: an index over ``item_vectors``, or ``None`` for exact search only.
    """

    def __init__(
        self,
        name: str,
        item_ids: Sequence[str],
        item_types: Sequence[str],
        item_vectors: np.ndarray,
        popularity: np.ndarray,
        ann: IVFIndex | None = None,
    ):
        self.name = name
        self.item_ids = list(item_ids)
        self.row_of = {item_id: row for row, item_id in enumerate(self.item_ids)}
        self.item_matrix = torch.from_numpy(np.ascontiguousarray(item_vectors, np.float32))
        self.popularity = np.asarray(popularity, dtype=np.float64)
        # Stable sort: ties keep catalog order, so the fallback is deterministic.
        self.popularity_order = np.argsort(-self.popularity, kind="stable")

        types = np.asarray(list(item_types), dtype=object)
        self.type_names = tuple(sorted(set(types.tolist())))
        self.type_masks = {t: torch.from_numpy(types == t) for t in self.type_names}
        self._types = types
        self.ann = ann

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return int(self.item_matrix.shape[1])

    def rows(self, item_ids: Sequence[str]) -> list[int]:
        """Return the rows of those ``item_ids`` that are candidates of this product."""
        return [self.row_of[i] for i in item_ids if i in self.row_of]

    def top_k(
        self,
        user_vectors: torch.Tensor,
        ks: Sequence[int],
        excluded_rows: Sequence[Sequence[int]],
        item_types: Sequence[tuple[str, ...] | None],
    ) -> list[Ranking]:
        """Rank the catalog for a batch of users.

        Args:
            user_vectors: ``[batch, dim]`` float32 user tower outputs.
            ks: ``[batch]`` number of items to return per user.
            excluded_rows: ``[batch]`` rows that must not be returned.
            item_types: ``[batch]`` allowed item types, ``None`` for all.

        Returns:
            One :class:`Ranking` per user, in batch order.
        """
        batch = user_vectors.shape[0]
        if batch == 0:
            return []
        if user_vectors.shape[1] != self.dim:
            raise ValueError(
                f"product {self.name!r}: user vectors have dim {user_vectors.shape[1]}, "
                f"item vectors {self.dim}"
            )

        rankings: list[Ranking | None] = [None] * batch
        exact_positions = list(range(batch))
        if self.ann is not None:
            exact_positions = self._ann_top_k(user_vectors, ks, excluded_rows,
                                              item_types, rankings)
        if exact_positions:
            self._exact_top_k(user_vectors, ks, excluded_rows, item_types,
                              exact_positions, rankings)
        return rankings  # type: ignore[return-value]

    def popular_k(
        self,
        ks: Sequence[int],
        excluded_rows: Sequence[Sequence[int]],
        item_types: Sequence[tuple[str, ...] | None],
    ) -> list[Ranking]:
        """Rank by training popularity, for users without a usable history.

        Args:
            ks: ``[batch]`` number of items per user.
            excluded_rows: ``[batch]`` rows that must not be returned.
            item_types: ``[batch]`` allowed item types, ``None`` for all.

        Returns:
            One :class:`Ranking` per user; scores are training counts.
        """
        rankings = []
        for k, excluded, types in zip(ks, excluded_rows, item_types):
            skip = set(excluded)
            allowed = None if self._all_types(types) else set(types)
            rows: list[int] = []
            # Walks the precomputed order, so the cost is O(k + filtered items)
            # and not O(num_items).
            for row in self.popularity_order:
                if row in skip or (allowed is not None and self._types[row] not in allowed):
                    continue
                rows.append(int(row))
                if len(rows) == k:
                    break
            rankings.append(Ranking(
                item_ids=[self.item_ids[r] for r in rows],
                scores=[float(self.popularity[r]) for r in rows],
                excluded=len(skip),
            ))
        return rankings

    def _all_types(self, types: tuple[str, ...] | None) -> bool:
        return types is None or set(types) >= set(self.type_names)

    def _exact_top_k(self, user_vectors, ks, excluded_rows, item_types, positions,
                     rankings) -> None:
        chunk = max(1, MAX_SCORES_PER_CHUNK // max(1, self.num_items))
        for start in range(0, len(positions), chunk):
            part = positions[start:start + chunk]
            scores = user_vectors[part] @ self.item_matrix.T
            for slot, position in enumerate(part):
                row_scores = scores[slot]
                types = item_types[position]
                if not self._all_types(types):
                    allowed = torch.zeros(self.num_items, dtype=torch.bool)
                    for item_type in types:
                        allowed |= self.type_masks[item_type]
                    row_scores.masked_fill_(~allowed, float("-inf"))
                if excluded_rows[position]:
                    row_scores[list(excluded_rows[position])] = float("-inf")
            k_max = min(max(ks[p] for p in part), self.num_items)
            values, indices = torch.topk(scores, k_max, dim=1)
            for slot, position in enumerate(part):
                rankings[position] = self._ranking(
                    values[slot, :ks[position]].tolist(),
                    indices[slot, :ks[position]].tolist(),
                    len(set(excluded_rows[position])),
                    exact=True,
                )

    def _ann_top_k(self, user_vectors, ks, excluded_rows, item_types,
                   rankings) -> list[int]:
        """Fill ``rankings`` from the IVF index and return the positions left
        for exact search: those with a type filter, and those whose probed
        lists held fewer than ``k`` allowed items."""
        candidates = [p for p in range(len(ks)) if self._all_types(item_types[p])]
        if not candidates:
            return list(range(len(ks)))
        fetch = max(ANN_CANDIDATE_FACTOR * ks[p] + len(excluded_rows[p]) for p in candidates)
        fetch = min(fetch, self.num_items)
        scores, rows = self.ann.search(user_vectors[candidates].numpy(), fetch)

        remaining = [p for p in range(len(ks)) if p not in set(candidates)]
        for slot, position in enumerate(candidates):
            skip = set(excluded_rows[position])
            keep = [(s, r) for s, r in zip(scores[slot].tolist(), rows[slot].tolist())
                    if r >= 0 and r not in skip][:ks[position]]
            if len(keep) < min(ks[position], self.num_items - len(skip)):
                remaining.append(position)
                continue
            rankings[position] = self._ranking(
                [s for s, _ in keep], [r for _, r in keep], len(skip), exact=False
            )
        return sorted(remaining)

    def _ranking(self, scores: list[float], rows: list[int], excluded: int,
                 exact: bool) -> Ranking:
        # Masked rows score -inf; they are returned only when fewer than k
        # items pass the filters, and are dropped here.
        finite = [(s, r) for s, r in zip(scores, rows) if s != float("-inf")]
        return Ranking(
            item_ids=[self.item_ids[r] for _, r in finite],
            scores=[float(s) for s, _ in finite],
            excluded=excluded,
            exact=exact,
        )
