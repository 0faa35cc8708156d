"""Full-ranking metrics over every candidate item, computed in user batches.

For each user the scorer's row of scores ranks every candidate item of the
product; history items and items outside the candidate set are removed
first. Ties between equal scores are broken by a random order of the items
drawn for each user from ``(tie_break_seed, user id)``. The order is the
same for every scorer, and it differs between users, so a scorer that
returns constant scores ranks each user's items at random. Its figures are
then close to their expected value under random ranking, instead of being
fixed by one catalogue-wide order.

Per user, with ``P`` the test positives and ``rank(i)`` the 1-based rank of
item ``i``:

* ``HR@K``: 1 if some positive ranks in the top ``K``, else 0.
* ``MRR``: ``1 / min_{i in P} rank(i)`` over the full ranking, not cut off.
* ``Recall@K``: ``|top K ∩ P| / |P|``.
* ``NDCG@K``: DCG of the top ``K`` with binary gains, divided by the DCG of
  an ideal ranking of ``min(|P|, K)`` positives.

Catalogue coverage at ``K`` is a property of a group of users: the share of
the candidate items that appear in at least one of their top ``K`` lists.
"""

from __future__ import annotations

from dataclasses import dataclass

import hashlib
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch

METRIC_NAMES = ("hr", "mrr", "recall", "ndcg")


@dataclass
class BatchRanking:
    """Per-user metrics of one batch in one view.

    Attributes:
        has_positive: ``[B]`` True where the user has a positive in the view;
            the other rows of the metric arrays are NaN.
        hr: ``[B]`` HR@hit_k.
        mrr: ``[B]`` reciprocal rank of the best-ranked positive.
        recall: ``[B]`` Recall@ranking_k.
        ndcg: ``[B]`` NDCG@ranking_k.
        top_items: ``[B, coverage_k]`` candidate columns of the top items, -1
            where fewer candidates than ``coverage_k`` remained.
    """

    has_positive: np.ndarray
    hr: np.ndarray
    mrr: np.ndarray
    recall: np.ndarray
    ndcg: np.ndarray
    top_items: np.ndarray


def tie_break_offsets(user_ids: Sequence[str], num_items: int, seed: int) -> torch.Tensor:
    """Return each user's seeded random order of the items as offsets in ``[0, 1)``.

    A user's order depends only on ``seed``, the user id and ``num_items``,
    so every scorer and every batch layout gets the same order for that
    user. Offsets are ``permutation / num_items``, distinct within a row.

    Args:
        user_ids: the batch's user ids.
        num_items: columns of the score matrix.
        seed: the non-negative ``tie_break_seed``.

    Returns:
        ``[len(user_ids), num_items]`` float64 offsets.
    """
    offsets = np.empty((len(user_ids), num_items), dtype=np.float64)
    for row, user_id in enumerate(user_ids):
        generator = np.random.default_rng([seed, _stable_hash(user_id)])
        offsets[row] = generator.permutation(num_items)
    offsets /= max(num_items, 1)
    return torch.from_numpy(offsets)


def _stable_hash(user_id: str) -> int:
    # Python's hash() of a str changes between processes, so it cannot seed a
    # reproducible order.
    digest = hashlib.blake2b(str(user_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def ranking_keys(scores: np.ndarray, offsets: torch.Tensor) -> torch.Tensor:
    """Turn float32 scores into float64 keys that are all distinct within a row.

    Each score moves up by less than half the gap to the next float32 value,
    in proportion to the item's offset, so distinct scores keep their order
    and equal scores are ordered by ``offsets``.

    Args:
        scores: ``[B, num_items]`` finite scores.
        offsets: ``[B, num_items]`` from :func:`tie_break_offsets`, or
            ``[num_items]`` for one order shared by every row.

    Returns:
        ``[B, num_items]`` float64 keys.
    """
    scores32 = np.ascontiguousarray(scores, dtype=np.float32)
    gaps = np.spacing(np.abs(scores32)).astype(np.float64)
    keys = torch.from_numpy(scores32.astype(np.float64))
    if offsets.dim() == 1:
        offsets = offsets.unsqueeze(0)
    keys += torch.from_numpy(gaps) * 0.5 * offsets
    return keys


@dataclass
class TopItems:
    """One batch's ranking over one candidate set, shared by its views.

    Attributes:
        keys: ``[B, num_items]`` ranking keys, ``-inf`` on removed items.
        items: ``[B, depth]`` columns of the best items, best first.
        valid: ``[B, depth]`` False where fewer candidates than ``depth``
            remained, so the slot holds a removed item.
    """

    keys: torch.Tensor
    items: torch.Tensor
    valid: torch.Tensor


def top_items(keys: torch.Tensor, removed: torch.Tensor, depth: int) -> TopItems:
    """Rank one batch: remove items and keep the ``depth`` best per user.

    Args:
        keys: ``[B, num_items]`` distinct ranking keys (:func:`ranking_keys`).
        removed: ``[B, num_items]`` bool, True for items that are not
            candidates of that user (history items, items outside the view).
        depth: how many of the best items to keep; at most ``num_items`` are.
    """
    keys = keys.masked_fill(removed, float("-inf"))
    top_keys, items = torch.topk(keys, min(depth, keys.shape[1]), dim=1)
    return TopItems(keys=keys, items=items, valid=torch.isfinite(top_keys))


def score_positives(top: TopItems, positives: sp.csr_matrix, hit_k: int,
                    ranking_k: int, coverage_k: int) -> BatchRanking:
    """Compute per-user metrics of one view from a shared ranking.

    Args:
        top: the batch's ranking over the view's candidates, kept to a depth
            of at least ``max(hit_k, ranking_k)``.
        positives: ``[B, num_items]`` CSR, nonzero on the positives that
            count in the view; none may be a removed item.
        hit_k: cut-off of the hit rate.
        ranking_k: cut-off of Recall and NDCG.
        coverage_k: length of the top lists kept for coverage.

    Returns:
        The batch's per-user metrics.
    """
    batch = top.keys.shape[0]
    positives = positives.tocsr()
    positives.eliminate_zeros()
    rows = torch.from_numpy(np.repeat(np.arange(batch), np.diff(positives.indptr)))
    columns = torch.from_numpy(positives.indices.astype(np.int64))
    num_positives = torch.from_numpy(np.diff(positives.indptr))
    has_positive = num_positives > 0

    positive_mask = torch.zeros(top.keys.shape, dtype=torch.bool)
    positive_mask[rows, columns] = True
    top_hits = positive_mask.gather(1, top.items) & top.valid
    hr = top_hits[:, :hit_k].any(dim=1).double()

    hits_at_k = top_hits[:, :ranking_k].double()
    recall = hits_at_k.sum(dim=1) / num_positives.clamp(min=1)
    discounts = 1.0 / torch.log2(torch.arange(2, ranking_k + 2, dtype=torch.float64))
    dcg = (hits_at_k * discounts[: hits_at_k.shape[1]]).sum(dim=1)
    ideal_cumulative = torch.cumsum(discounts, dim=0)
    ideal_counts = num_positives.clamp(min=1, max=ranking_k) - 1
    ndcg = dcg / ideal_cumulative[ideal_counts]

    # The best positive's rank is 1 + the number of candidates whose key is
    # higher; rows without a positive compare against -inf and are masked.
    best_positive = torch.full((batch,), float("-inf"), dtype=torch.float64)
    best_positive.scatter_reduce_(0, rows, top.keys[rows, columns], reduce="amax")
    better = (top.keys > best_positive.unsqueeze(1)).sum(dim=1)
    mrr = 1.0 / (better.double() + 1.0)

    coverage_items = top.items[:, :coverage_k].masked_fill(~top.valid[:, :coverage_k], -1)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    return BatchRanking(
        has_positive=has_positive.numpy(),
        hr=torch.where(has_positive, hr, nan).numpy(),
        mrr=torch.where(has_positive, mrr, nan).numpy(),
        recall=torch.where(has_positive, recall, nan).numpy(),
        ndcg=torch.where(has_positive, ndcg, nan).numpy(),
        top_items=coverage_items.numpy().astype(np.int32),
    )


def rank_batch(
    keys: torch.Tensor,
    removed: torch.Tensor,
    positives: sp.csr_matrix,
    hit_k: int,
    ranking_k: int,
    coverage_k: int,
) -> BatchRanking:
    """Rank one batch and compute its per-user metrics in a single view.

    Args:
        keys: ``[B, num_items]`` distinct ranking keys (:func:`ranking_keys`).
        removed: ``[B, num_items]`` bool, True for items that are not
            candidates of that user.
        positives: ``[B, num_items]`` CSR, nonzero on the user's positives;
            none may be a removed item.
        hit_k: cut-off of the hit rate.
        ranking_k: cut-off of Recall and NDCG.
        coverage_k: length of the top lists kept for coverage.
    """
    top = top_items(keys, removed, max(hit_k, ranking_k, coverage_k))
    return score_positives(top, positives, hit_k, ranking_k, coverage_k)


def removed_mask(history: sp.csr_matrix, candidates: np.ndarray | None) -> torch.Tensor:
    """Return ``[B, num_items]`` bool: history items, and non-candidates if given.

    Args:
        history: ``[B, num_items]`` CSR, nonzero on each user's history items.
        candidates: ``[num_items]`` bool candidate set, or None for all items.
    """
    removed = torch.from_numpy(history.toarray() > 0)
    if candidates is not None:
        removed |= ~torch.from_numpy(candidates).unsqueeze(0)
    return removed


def coverage(top_items: np.ndarray, num_candidates: int) -> float:
    """Return the share of ``num_candidates`` items found in ``top_items``.

    Args:
        top_items: ``[num_users, K]`` candidate columns, -1 for empty slots.
        num_candidates: size of the candidate set.
    """
    if num_candidates == 0:
        return float("nan")
    distinct = np.unique(top_items[top_items >= 0])
    return float(distinct.size) / num_candidates
