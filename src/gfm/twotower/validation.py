"""Full-ranking Recall@K on the valid split, the early-stopping signal."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

# Users scored per matrix product, bounding memory to
# EVAL_CHUNK_USERS * num_items float32 scores.
EVAL_CHUNK_USERS = 1024


def recall_at_k(
    user_vectors: torch.Tensor | None,
    item_scores: torch.Tensor,
    targets: Sequence[np.ndarray],
    seen: Sequence[np.ndarray],
    k: int,
) -> float:
    """Return the mean over users of ``|top-K ∩ targets| / |targets|``.

    Every product item is ranked; each user's training items are removed
    from the ranking first, as a served recommendation would not repeat them.

    Args:
        user_vectors: ``[num_users, dim]`` user vectors, or ``None`` to rank
            every user by the same ``item_scores`` (a popularity baseline).
        item_scores: ``[num_items, dim]`` item vectors, or ``[num_items]``
            fixed scores when ``user_vectors`` is ``None``.
        targets: ``[num_users]`` arrays of target item rows (non-empty).
        seen: ``[num_users]`` arrays of item rows to exclude.
        k: the cutoff.

    Returns:
        The mean recall, 0.0 when there are no users.
    """
    num_users = len(targets)
    if num_users == 0:
        return 0.0
    num_items = item_scores.shape[0]
    k = min(k, num_items)
    total = 0.0
    for start in range(0, num_users, EVAL_CHUNK_USERS):
        stop = min(start + EVAL_CHUNK_USERS, num_users)
        if user_vectors is None:
            scores = item_scores.unsqueeze(0).repeat(stop - start, 1)
        else:
            scores = user_vectors[start:stop] @ item_scores.T
        rows = np.concatenate([np.full(len(seen[u]), u - start) for u in range(start, stop)])
        cols = np.concatenate([seen[u] for u in range(start, stop)])
        if len(cols):
            scores[torch.from_numpy(rows.astype(np.int64)),
                   torch.from_numpy(cols.astype(np.int64))] = float("-inf")
        top = torch.topk(scores, k, dim=1).indices.numpy()
        for offset, user in enumerate(range(start, stop)):
            hits = np.isin(targets[user], top[offset]).sum()
            total += hits / len(targets[user])
    return float(total / num_users)
