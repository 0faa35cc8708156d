"""Validation metrics of link prediction on held-out co-interaction pairs.

* ``AUC``: the probability that a held-out pair ``(u, v)`` scores above
  ``(u, n)`` for a uniformly random item ``n`` of ``v``'s type; 0.5 is
  random.
* ``HR@K``: the share of held-out pairs whose ``v`` ranks in the top ``K``
  of all items of its type by score with ``u``. The ranking leaves out ``u``
  itself and ``u``'s training neighbours in that relation (the filtered
  setting). Random is about ``K / num_items``.

Both use a seeded sample of at most ``max_pairs`` pairs per relation.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor
from torch_geometric.typing import EdgeType, NodeType

from gfm.hgnn.split import relation_name

logger = logging.getLogger(__name__)


def auc_score(pos: Tensor, neg: Tensor) -> float:
    """Return the ROC AUC of positive against negative scores (ties count 0.5)."""
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    scores = torch.cat([pos, neg]).double()
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    # Average the ranks of tied scores.
    unique, inverse, counts = torch.unique(
        scores, return_inverse=True, return_counts=True
    )
    if unique.numel() < scores.numel():
        sums = torch.zeros(unique.numel(), dtype=torch.float64).index_add_(
            0, inverse, ranks
        )
        ranks = (sums / counts)[inverse]
    num_pos, num_neg = pos.numel(), neg.numel()
    rank_sum = ranks[:num_pos].sum()
    return float((rank_sum - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def _sample(pairs: Tensor, max_pairs: int, generator: torch.Generator) -> Tensor:
    if pairs.shape[1] <= max_pairs:
        return pairs
    keep = torch.randperm(pairs.shape[1], generator=generator)[:max_pairs]
    return pairs[:, keep]


def hit_rate(
    src_emb: Tensor,
    dst_emb: Tensor,
    pairs: Tensor,
    known: Tensor,
    *,
    k: int,
    same_type: bool,
    chunk: int = 256,
) -> float:
    """Return ``HR@k`` of ``pairs`` under full ranking of the destination type.

    Args:
        src_emb: ``[num_src, d]`` source embeddings.
        dst_emb: ``[num_dst, d]`` destination embeddings.
        pairs: ``[2, P]`` held-out pairs.
        known: ``[2, E]`` training pairs of the relation, in both directions
            for a same-type relation; they are left out of the ranking.
        k: cut-off.
        same_type: whether source and destination share a node type, so the
            source itself is left out too.
        chunk: pairs scored at a time.
    """
    if pairs.shape[1] == 0:
        return float("nan")
    num_dst = dst_emb.shape[0]
    known_keys = torch.sort(known[0] * num_dst + known[1]).values
    hits = 0
    for start in range(0, pairs.shape[1], chunk):
        src, dst = pairs[0, start : start + chunk], pairs[1, start : start + chunk]
        scores = src_emb[src] @ dst_emb.T
        target = scores.gather(1, dst.unsqueeze(1))
        # Mask training neighbours of each source: look up every
        # (source, candidate) key among the sorted known keys.
        keys = src.unsqueeze(1) * num_dst + torch.arange(num_dst).unsqueeze(0)
        if known_keys.numel():
            position = torch.searchsorted(known_keys, keys).clamp(
                max=known_keys.numel() - 1
            )
            scores = scores.masked_fill(known_keys[position] == keys, float("-inf"))
        if same_type:
            scores[torch.arange(src.numel()), src] = float("-inf")
        scores.scatter_(1, dst.unsqueeze(1), target)
        better = (scores > target).sum(dim=1)
        hits += int((better < k).sum())
    return hits / pairs.shape[1]


@torch.no_grad()
def link_metrics(
    embeddings: dict[NodeType, Tensor],
    valid_pairs: dict[EdgeType, Tensor],
    train_pairs: dict[EdgeType, Tensor],
    *,
    k: int,
    max_pairs: int,
    seed: int,
) -> dict[str, float]:
    """Return ``val_auc`` and ``val_hr`` overall and per relation.

    Args:
        embeddings: ``[num_nodes_t, d]`` unit-norm embeddings per node type,
            computed on the training graph.
        valid_pairs: held-out ``[2, P]`` pairs per canonical relation.
        train_pairs: training ``[2, E]`` pairs per canonical relation.
        k: cut-off of ``HR@k``.
        max_pairs: pairs scored per relation.
        seed: seed of the pair sample and the AUC negatives.

    Returns:
        ``val_auc`` and ``val_hr`` (means over relations weighted by their
        scored pairs),
        ``val_auc/<relation>``, ``val_hr/<relation>``, and ``val_pairs``.
    """
    generator = torch.Generator().manual_seed(seed)
    metrics: dict[str, float] = {}
    auc_sum, hr_sum, total_pairs = 0.0, 0.0, 0
    for relation in sorted(valid_pairs):
        src_type, _, dst_type = relation
        pairs = _sample(valid_pairs[relation], max_pairs, generator)
        if pairs.shape[1] == 0:
            continue
        src_emb, dst_emb = embeddings[src_type], embeddings[dst_type]
        negatives = torch.randint(
            0, dst_emb.shape[0], (pairs.shape[1],), generator=generator
        )
        pos = (src_emb[pairs[0]] * dst_emb[pairs[1]]).sum(-1)
        neg = (src_emb[pairs[0]] * dst_emb[negatives]).sum(-1)
        name = relation_name(relation)
        auc = auc_score(pos, neg)
        metrics[f"val_auc/{name}"] = auc

        known = train_pairs[relation]
        same_type = src_type == dst_type
        if same_type:
            known = torch.cat([known, known.flip(0)], dim=1)
        hr = hit_rate(src_emb, dst_emb, pairs, known, k=k, same_type=same_type)
        metrics[f"val_hr/{name}"] = hr
        auc_sum += auc * pairs.shape[1]
        hr_sum += hr * pairs.shape[1]
        total_pairs += pairs.shape[1]

    if total_pairs == 0:
        logger.warning("no validation pairs: val_auc and val_hr are NaN")
        return {"val_auc": float("nan"), "val_hr": float("nan"), "val_pairs": 0}
    # Relations score on different scales, so a pooled AUC would rank one
    # relation's pairs against another's; average per relation instead.
    metrics["val_auc"] = auc_sum / total_pairs
    metrics["val_hr"] = hr_sum / total_pairs
    metrics["val_pairs"] = total_pairs
    return metrics
