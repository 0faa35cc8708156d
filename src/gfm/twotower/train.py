"""Training of one product's two-tower model with early stopping."""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from gfm.data.validate import check_user_ids
from gfm.embeddings import ItemEmbeddings
from gfm.logging_setup import progress_enabled
from gfm.twotower.config import TwoTowerConfig
from gfm.twotower.features import UserEncoder
from gfm.twotower.inputs import (
    ProductItems,
    TrainingData,
    build_training_data,
    select_product_items,
)
from gfm.twotower.model import ItemTower, UserTower, in_batch_softmax_loss
from gfm.twotower.product_model import ProductModel
from gfm.twotower.threads import available_cpus
from gfm.twotower.validation import recall_at_k

logger = logging.getLogger(__name__)

# Items pushed through the item tower per call when computing all item vectors.
ITEM_BATCH_SIZE = 8192


def train_two_tower(
    product: str,
    item_types: Sequence[str],
    train: pd.DataFrame,
    valid: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame | None = None,
    hgnn: ItemEmbeddings | None = None,
    llm: ItemEmbeddings | None = None,
    config: TwoTowerConfig | None = None,
) -> ProductModel:
    """Train the two-tower model of one product.

    Training pairs are the unique ``(user, item)`` pairs of ``train`` on the
    product's items. The user's input is the mean history embedding per item
    type over all of the user's training items, plus user features. Items of
    every type count, so history in one product informs another. Each epoch
    ends with a
    full-ranking Recall@K on ``valid``; training stops after ``patience``
    epochs without improvement and keeps the best epoch's weights.

    Args:
        product: the product name.
        item_types: the item types the product recommends.
        train: training interactions of all item types (``user_id``,
            ``item_id``; other columns are ignored).
        valid: validation interactions, same columns.
        items: the catalog (``item_id``, ``item_type`` and the columns named
            by ``config.item_fields``).
        users: user features (``user_id`` plus feature columns), or ``None``.
        hgnn: HGNN embeddings of every catalog item; required when
            ``config.use_hgnn``.
        llm: LLM embeddings of every catalog item; required when
            ``config.use_llm`` or when history means fall back to them.
        config: the settings; ``None`` uses the defaults.

    Returns:
        The trained model; ``model.metrics`` contains the training curve, the
        best validation recall, the popularity baseline's recall on the same
        split, counts and every row or item left out, by reason.

    Raises:
        ValueError: on missing embeddings, columns or item types, a users
            table that repeats a user id, or when no training pair is on the
            product's items.
    """
    config = config or TwoTowerConfig()
    _check_arguments(product, item_types, hgnn, llm, config)
    if users is not None and config.use_user_features:
        check_user_ids(users)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads or available_cpus())
    try:
        return _train(product, item_types, train, valid, items, users, hgnn, llm, config)
    finally:
        # The thread count is process-wide, so the caller gets its own back.
        torch.set_num_threads(threads)


def _train(
    product: str,
    item_types: Sequence[str],
    train: pd.DataFrame,
    valid: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame | None,
    hgnn: ItemEmbeddings | None,
    llm: ItemEmbeddings | None,
    config: TwoTowerConfig,
) -> ProductModel:
    started = time.perf_counter()
    logger.info("training two-tower model of product %r (item types %s) with %d "
                "torch threads", product, list(item_types), torch.get_num_threads())
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    dropped: Counter = Counter()
    history = hgnn if config.use_hgnn else llm
    encoder = UserEncoder.fit(
        history, config.history_source,
        users if config.use_user_features else None,
        config.user_fields, config.min_category_count)
    catalog = select_product_items(
        product, item_types, items, hgnn, llm, encoder, config, dropped)
    data = build_training_data(
        train, valid, catalog, encoder, users if config.use_user_features else None,
        dropped, config.positive_min_weight)

    user_tower, item_tower = _build_towers(encoder, catalog, config)
    fit = _fit(product, user_tower, item_tower, data, catalog, encoder, config, generator)
    item_vectors = compute_item_vectors(item_tower, catalog)
    metrics = _metrics(product, item_types, fit, data, catalog, encoder, config,
                       time.perf_counter() - started)
    logger.info("trained product %r in %.1f s: best epoch %d, valid Recall@%d %s "
                "(popularity %s)", product, metrics["train_seconds"], fit["best_epoch"],
                config.eval_k, metrics["best_valid_recall"], fit["popularity_recall"])
    return ProductModel(
        product=product,
        item_types=item_types,
        item_ids=catalog.item_ids,
        item_types_of_rows=catalog.item_types,
        item_vectors=item_vectors,
        popularity=data.popularity,
        user_tower=user_tower,
        encoder=encoder,
        config=config,
        metrics=metrics,
    )


def _build_towers(
    encoder: UserEncoder, catalog: ProductItems, config: TwoTowerConfig
) -> tuple[UserTower, ItemTower]:
    user_tower = UserTower(
        num_history_types=len(encoder.history_types),
        history_dim=encoder.history_dim,
        categorical_sizes=[v.size for _, v in encoder.categorical],
        categorical_dim=config.categorical_dim,
        num_numeric=len(encoder.numeric),
        tower_dims=config.tower_dims,
        dropout=config.dropout,
    )
    item_tower = ItemTower(
        dense_dim=catalog.dense.shape[1],
        field_sizes=[v.size for v in catalog.vocabs],
        categorical_dim=config.categorical_dim,
        tower_dims=config.tower_dims,
        dropout=config.dropout,
    )
    return user_tower, item_tower


def _fit(
    product: str,
    user_tower: UserTower,
    item_tower: ItemTower,
    data: TrainingData,
    catalog: ProductItems,
    encoder: UserEncoder,
    config: TwoTowerConfig,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Train epoch by epoch with early stopping; leave the best epoch's weights loaded.

    Returns:
        ``epochs`` (one record per epoch), ``best_epoch``, ``best_recall``
        (``None`` without validation users) and ``popularity_recall``.
    """
    optimizer = torch.optim.Adam(
        list(user_tower.parameters()) + list(item_tower.parameters()),
        lr=config.learning_rate, weight_decay=config.weight_decay)
    log_q = None
    if config.logq_correction:
        share = data.popularity / data.popularity.sum()
        log_q = torch.from_numpy(np.log(np.maximum(share, 1e-12)).astype(np.float32))

    popularity_recall = None
    if len(data.valid_users):
        popularity_recall = recall_at_k(
            None, torch.from_numpy(data.popularity.astype(np.float32)),
            data.valid_targets, [data.seen[u] for u in data.valid_users], config.eval_k)

    epochs: list[dict[str, Any]] = []
    best_recall, best_epoch, best_state = None, 0, None
    stale = 0
    for epoch in range(1, config.max_epochs + 1):
        epoch_started = time.perf_counter()
        loss = _train_epoch(user_tower, item_tower, optimizer, data, catalog, encoder,
                            log_q, config, generator, epoch)
        recall = _valid_recall(user_tower, item_tower, data, catalog, config)
        seconds = time.perf_counter() - epoch_started
        epochs.append({
            "epoch": epoch,
            "loss": loss,
            "valid_recall": recall,
            "seconds": round(seconds, 3),
            "examples_per_second": round(len(data.example_items) / seconds, 1),
        })
        logger.info("product %r epoch %d: loss %.4f, valid Recall@%d %s, %.1f s",
                    product, epoch, loss, config.eval_k,
                    "n/a" if recall is None else f"{recall:.4f}", seconds)

        # Without validation users every epoch counts as the best so far.
        if recall is None or best_recall is None or recall > best_recall:
            best_recall, best_epoch, stale = recall, epoch, 0
            best_state = (copy.deepcopy(user_tower.state_dict()),
                          copy.deepcopy(item_tower.state_dict()))
            continue
        stale += 1
        if stale >= config.patience:
            logger.info("product %r: no better valid recall for %d epochs, stopping "
                        "after epoch %d", product, stale, epoch)
            break

    user_tower.load_state_dict(best_state[0])
    item_tower.load_state_dict(best_state[1])
    return {"epochs": epochs, "best_epoch": best_epoch, "best_recall": best_recall,
            "popularity_recall": popularity_recall}


def _metrics(
    product: str,
    item_types: Sequence[str],
    fit: dict[str, Any],
    data: TrainingData,
    catalog: ProductItems,
    encoder: UserEncoder,
    config: TwoTowerConfig,
    seconds: float,
) -> dict[str, Any]:
    epochs = fit["epochs"]
    examples_seen = len(data.example_items) * len(epochs)
    valid_counts = data.history_count[torch.from_numpy(data.valid_users)]
    return {
        "product": product,
        "item_types": list(item_types),
        "eval_k": config.eval_k,
        "epochs": epochs,
        "best_epoch": fit["best_epoch"],
        "best_valid_recall": fit["best_recall"],
        "popularity_valid_recall": fit["popularity_recall"],
        "stopped_early": len(epochs) < config.max_epochs,
        "train_seconds": round(seconds, 3),
        "examples_per_second": round(
            examples_seen / sum(e["seconds"] for e in epochs), 1),
        "counts": {
            "items": len(catalog.item_ids),
            "users": len(data.user_ids),
            "train_pairs": len(data.example_items),
            "valid_users": len(data.valid_users),
            "valid_users_without_history": int((valid_counts.sum(dim=1) == 0).sum()),
            "valid_pairs": int(sum(len(t) for t in data.valid_targets)),
            "history_types": encoder.history_types,
            "item_dense_dim": int(catalog.dense.shape[1]),
            "item_fields": list(config.item_fields),
            "user_categorical_features": [n for n, _ in encoder.categorical],
            "user_numeric_features": [n for n, _, _ in encoder.numeric],
        },
        "dropped": data.dropped,
    }


def _check_arguments(
    product: str,
    item_types: Sequence[str],
    hgnn: ItemEmbeddings | None,
    llm: ItemEmbeddings | None,
    config: TwoTowerConfig,
) -> None:
    if not isinstance(product, str) or not product:
        raise ValueError(f"product must be a non-empty name, got {product!r}")
    if isinstance(item_types, str) or not item_types:
        raise ValueError(
            f"item_types of product {product!r} must be a non-empty list of item "
            f"types, got {item_types!r}"
        )
    if config.use_hgnn and hgnn is None:
        raise ValueError(
            f"product {product!r}: use_hgnn is true but no HGNN embeddings were "
            f"given; pass hgnn= or set use_hgnn: false"
        )
    if config.use_llm and llm is None:
        raise ValueError(
            f"product {product!r}: use_llm is true but no LLM embeddings were "
            f"given; pass llm= or set use_llm: false"
        )
    if hgnn is not None and llm is not None and config.use_hgnn and config.use_llm:
        if set(hgnn.item_types) != set(llm.item_types):
            raise ValueError(
                f"HGNN embeddings cover item types {sorted(set(hgnn.item_types))} but "
                f"LLM embeddings cover {sorted(set(llm.item_types))}; both must "
                f"cover the same catalog"
            )


def _train_epoch(
    user_tower: UserTower,
    item_tower: ItemTower,
    optimizer: torch.optim.Optimizer,
    data: TrainingData,
    catalog: ProductItems,
    encoder: UserEncoder,
    log_q: torch.Tensor | None,
    config: TwoTowerConfig,
    generator: torch.Generator,
    epoch: int,
) -> float:
    """Run one pass over the shuffled training pairs; return the mean loss."""
    user_tower.train()
    item_tower.train()
    order = torch.randperm(len(data.example_items), generator=generator)
    # A final batch of a single pair has no negatives, so it is skipped.
    starts = range(0, len(order) - 1, config.batch_size)
    if progress_enabled():
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"epoch {epoch}", unit="batch", leave=False)
    total, batches = 0.0, 0
    for start in starts:
        batch = order[start:start + config.batch_size]
        users = data.example_users[batch]
        items = data.example_items[batch]
        inputs = data.user_inputs(
            users, items if config.exclude_target_from_history else None,
            catalog, encoder)
        user_vectors = user_tower(inputs)
        # Popular items repeat within a batch (about 30% of a MovieLens-1M
        # batch of 1024), so the item tower runs once per distinct item.
        distinct, position = torch.unique(items, return_inverse=True)
        item_vectors = item_tower(catalog.dense[distinct],
                                  [t[distinct] for t in catalog.tokens])[position]
        loss = in_batch_softmax_loss(
            user_vectors, item_vectors, items,
            None if log_q is None else log_q[items], config.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
        batches += 1
    return total / max(batches, 1)


def compute_item_vectors(item_tower: ItemTower, catalog: ProductItems) -> np.ndarray:
    """Return float32 ``[num_items, dim]`` item tower outputs of every product item."""
    item_tower.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(catalog.item_ids), ITEM_BATCH_SIZE):
            rows = slice(start, start + ITEM_BATCH_SIZE)
            parts.append(item_tower(catalog.dense[rows], [t[rows] for t in catalog.tokens]))
    return torch.cat(parts).numpy()


def _valid_recall(
    user_tower: UserTower,
    item_tower: ItemTower,
    data: TrainingData,
    catalog: ProductItems,
    config: TwoTowerConfig,
) -> float | None:
    if len(data.valid_users) == 0:
        return None
    user_tower.eval()
    item_vectors = torch.from_numpy(compute_item_vectors(item_tower, catalog))
    with torch.no_grad():
        users = torch.from_numpy(data.valid_users)
        user_vectors = user_tower(data.user_inputs(users))
    seen = [data.seen[u] for u in data.valid_users]
    return recall_at_k(user_vectors, item_vectors, data.valid_targets, seen, config.eval_k)
