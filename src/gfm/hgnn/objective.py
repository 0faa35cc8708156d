"""Max-margin link-prediction loss on cosine scores.

For a positive pair ``(u, v)`` and a negative item ``n`` of ``v``'s type,
the hinge term is ``max(0, margin - s(u, v) + s(u, n))`` with ``s`` the dot
product of L2-normalized embeddings. Negatives are random items from the
sampler and, optionally, in-batch negatives: the other positives of the
batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def hinge_loss(
    src: Tensor,
    dst_pos: Tensor,
    dst_neg: Tensor,
    margin: float,
) -> Tensor:
    """Return the mean hinge loss against random negatives.

    Args:
        src: ``[B, d]`` source embeddings.
        dst_pos: ``[B, d]`` embeddings of the positive destinations.
        dst_neg: ``[B, k, d]`` embeddings of ``k`` negatives per pair.
        margin: required gap between positive and negative scores.

    Returns:
        A scalar tensor.
    """
    pos = (src * dst_pos).sum(dim=-1, keepdim=True)
    neg = torch.einsum("bd,bkd->bk", src, dst_neg)
    return torch.relu(margin - pos + neg).mean()


def in_batch_hinge_loss(
    src: Tensor,
    dst_pos: Tensor,
    dst_ids: Tensor,
    margin: float,
    src_ids: Tensor | None = None,
) -> Tensor:
    """Return the mean hinge loss with the batch's other positives as negatives.

    Args:
        src: ``[B, d]`` source embeddings.
        dst_pos: ``[B, d]`` positive destination embeddings.
        dst_ids: ``[B]`` node ids of the destinations; a column whose id equals
            the row's own positive is not a negative of that row.
        margin: required gap between positive and negative scores.
        src_ids: ``[B]`` node ids of the sources, for a relation within one
            node type; a column whose id equals the row's source (the anchor
            itself, cosine score 1) is not a negative of that row either.

    Returns:
        A scalar tensor; zero when no column is a negative.
    """
    scores = src @ dst_pos.T
    pos = scores.diagonal().unsqueeze(1)
    is_negative = dst_ids.unsqueeze(0) != dst_ids.unsqueeze(1)
    if src_ids is not None:
        is_negative &= dst_ids.unsqueeze(0) != src_ids.unsqueeze(1)
    if not bool(is_negative.any()):
        return scores.sum() * 0.0
    terms = torch.relu(margin - pos + scores)
    return terms[is_negative].mean()


def batch_loss(
    embeddings: dict[str, Tensor],
    batch,
    relation: tuple[str, str, str],
    *,
    margin: float,
    in_batch_negatives: bool,
) -> Tensor:
    """Return the loss of one ``LinkNeighborLoader`` triplet batch.

    Args:
        embeddings: ``[num_batch_nodes_t, d]`` output per node type.
        batch: the sampled ``HeteroData`` with ``src_index``,
            ``dst_pos_index`` and ``dst_neg_index``.
        relation: the canonical edge type of the batch's pairs.
        margin: hinge margin.
        in_batch_negatives: add the in-batch term.
    """
    src_type, _, dst_type = relation
    src_index = batch[src_type].src_index
    pos_index = batch[dst_type].dst_pos_index
    neg_index = batch[dst_type].dst_neg_index
    if neg_index.dim() == 1:
        neg_index = neg_index.unsqueeze(1)

    src = embeddings[src_type][src_index]
    dst_pos = embeddings[dst_type][pos_index]
    dst_neg = embeddings[dst_type][neg_index]
    loss = hinge_loss(src, dst_pos, dst_neg, margin)
    if in_batch_negatives:
        dst_ids = batch[dst_type].n_id[pos_index]
        src_ids = batch[src_type].n_id[src_index] if src_type == dst_type else None
        loss = loss + in_batch_hinge_loss(src, dst_pos, dst_ids, margin, src_ids)
    return loss
