"""Stand-in item embeddings for two-tower runs without the upstream stages.

They let the two-tower model be trained, tested and benchmarked on real
interactions without running featurization and the HGNN first. A truncated
SVD of the training user-item matrix replaces the HGNN embeddings, because
it carries collaborative signal too. A random projection of each item's
genres replaces the LLM embeddings. Both cover every catalog item.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from gfm.embeddings import ItemEmbeddings


def svd_embeddings(
    train: pd.DataFrame, items: pd.DataFrame, dim: int, seed: int = 0
) -> ItemEmbeddings:
    """Return item factors of a rank-``dim`` SVD of the binary user-item matrix.

    Args:
        train: interactions (``user_id``, ``item_id``); items missing from
            ``items`` are ignored.
        items: the catalog (``item_id``, ``item_type``); items without
            interactions get zero vectors.
        dim: the rank, which is the embedding width.
        seed: seed of the randomized SVD.

    Returns:
        ``[num_items, dim]`` embeddings ``U * sqrt(S)``, in ``items`` row order.
    """
    item_row = {item_id: k for k, item_id in enumerate(items["item_id"])}
    rows = train["item_id"].map(item_row)
    known = rows.notna().to_numpy()
    user_codes, _ = pd.factorize(train["user_id"][known])
    indices = torch.tensor(np.stack([rows[known].to_numpy().astype(np.int64), user_codes]))
    matrix = torch.sparse_coo_tensor(
        indices, torch.ones(len(user_codes)), (len(items), int(user_codes.max()) + 1),
        check_invariants=True).coalesce()
    torch.manual_seed(seed)
    left, singular, _ = torch.svd_lowrank(matrix, q=dim, niter=4)
    factors = (left * singular.sqrt()).numpy().astype(np.float32)
    return ItemEmbeddings(items["item_id"].tolist(), items["item_type"].tolist(), factors,
                          {"model": "svd-stand-in", "rank": dim})


def genre_embeddings(items: pd.DataFrame, dim: int, seed: int = 0) -> ItemEmbeddings:
    """Return unit-norm random projections of genre multi-hot vectors, plus noise.

    Args:
        items: the catalog; ``genres`` contains a list (or nothing) per item.
        dim: the embedding width.
        seed: seed of the projection and the noise.

    Returns:
        ``[num_items, dim]`` L2-normalized embeddings, in ``items`` row order.
        Items without genres get pure noise.
    """
    per_item = [list(g) if isinstance(g, (list, tuple, np.ndarray)) else []
                for g in items["genres"]]
    genres = sorted({g for values in per_item for g in values})
    column = {g: k for k, g in enumerate(genres)}
    multi_hot = np.zeros((len(items), len(genres)), dtype=np.float32)
    for row, values in enumerate(per_item):
        multi_hot[row, [column[g] for g in values]] = 1.0
    rng = np.random.default_rng(seed)
    vectors = multi_hot @ rng.normal(size=(len(genres), dim)).astype(np.float32)
    vectors += 0.1 * rng.normal(size=vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return ItemEmbeddings(items["item_id"].tolist(), items["item_type"].tolist(), vectors,
                          {"model": "genre-stand-in"})
