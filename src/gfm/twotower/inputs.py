"""Turn interaction tables and item embeddings into training tensors.

Everything a training step needs is precomputed here once: the item tower's
inputs for every product item, each user's per-type history sums and counts,
user feature indices, the (user, item) training pairs and the validation
targets. Every row or item left out is counted by reason in ``dropped``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from gfm.embeddings import ItemEmbeddings
from gfm.twotower.config import TwoTowerConfig
from gfm.twotower.features import CategoricalVocab, UserEncoder, UserInputs, encode_item_field

logger = logging.getLogger(__name__)

INTERACTION_COLUMNS = ("user_id", "item_id")
ITEM_COLUMNS = ("item_id", "item_type")


@dataclass
class ProductItems:
    """The items of one product and their item tower inputs.

    Args:
        item_ids: ``[num_items]`` ids, in row order.
        item_types: ``[num_items]`` the type of each item.
        dense: float32 ``[num_items, dense_dim]``, HGNN and/or LLM embeddings.
        tokens: one int64 ``[num_items, max_tokens]`` matrix per item field.
        vocabs: the vocabulary of each item field, in ``tokens`` order.
        history_rows: int64 ``[num_items]`` row of each item in the
            history embeddings.
        excluded_ids: ids of the product's item types left out because an
            embedding the settings require is missing.
    """

    item_ids: list[str]
    item_types: list[str]
    dense: torch.Tensor
    tokens: list[torch.Tensor]
    vocabs: list[CategoricalVocab]
    history_rows: torch.Tensor
    excluded_ids: set[str] = field(default_factory=set)
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {item_id: row for row, item_id in enumerate(self.item_ids)}


@dataclass
class TrainingData:
    """Precomputed tensors for one product's training and validation.

    Args:
        user_ids: ``[num_users]`` every user of the training or valid split.
        history_sum: float32 ``[num_users, num_types, history_dim]`` sum of
            the history embeddings of each user's training items, per type.
        history_count: float32 ``[num_users, num_types]`` those items' counts.
        categorical: int64 ``[num_users, num_categorical]`` user features.
        numeric: float32 ``[num_users, num_numeric]`` user features.
        example_users: int64 ``[num_examples]`` user row of each training pair.
        example_items: int64 ``[num_examples]`` product item row of each pair.
        popularity: int64 ``[num_items]`` training pairs per product item.
        seen: ``[num_users]`` sorted product item rows each user has in
            training, targets or not.
        valid_users: user rows that have validation targets.
        valid_targets: ``[len(valid_users)]`` arrays of target item rows.
        dropped: rows and items left out, by reason.
    """

    user_ids: list[str]
    history_sum: torch.Tensor
    history_count: torch.Tensor
    categorical: torch.Tensor
    numeric: torch.Tensor
    example_users: torch.Tensor
    example_items: torch.Tensor
    popularity: np.ndarray
    seen: list[np.ndarray]
    valid_users: np.ndarray
    valid_targets: list[np.ndarray]
    dropped: dict[str, int]

    def user_inputs(
        self,
        users: torch.Tensor,
        exclude_items: torch.Tensor | None = None,
        items: ProductItems | None = None,
        encoder: UserEncoder | None = None,
    ) -> UserInputs:
        """Gather user tower inputs for a batch of user rows.

        Args:
            users: int64 ``[B]`` user rows.
            exclude_items: int64 ``[B]`` product item rows to leave out of
                each user's history mean (the training targets), or ``None``.
            items: the product items, needed with ``exclude_items``.
            encoder: the user encoder, needed with ``exclude_items``.
        """
        sums = self.history_sum[users]
        counts = self.history_count[users]
        if exclude_items is not None:
            rows = items.history_rows[exclude_items]
            types = torch.from_numpy(encoder.row_type)[rows]
            batch = torch.arange(len(users))
            sums = sums.clone()
            counts = counts.clone()
            sums[batch, types] -= encoder.matrix[rows]
            counts[batch, types] -= 1.0
        mask = (counts > 0).float()
        mean = sums / counts.clamp(min=1.0).unsqueeze(-1) * mask.unsqueeze(-1)
        return UserInputs(mean, mask, self.categorical[users], self.numeric[users])


def check_columns(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Raise ValueError naming the columns of ``columns`` missing from ``table``."""
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{name} table lacks column(s) {missing}; it has {list(table.columns)}"
        )


def select_product_items(
    product: str,
    item_types: Sequence[str],
    items: pd.DataFrame,
    hgnn: ItemEmbeddings | None,
    llm: ItemEmbeddings | None,
    encoder: UserEncoder,
    config: TwoTowerConfig,
    dropped: Counter,
) -> ProductItems:
    """Pick the product's items and build their item tower inputs.

    Items lacking an embedding the settings require are left out and counted.

    Raises:
        ValueError: if an item type has no items, a field is not a column,
            item ids repeat, or no item has every required embedding.
    """
    check_columns(items, ITEM_COLUMNS + tuple(config.item_fields), "items")
    if items["item_id"].duplicated().any():
        first = items.loc[items["item_id"].duplicated(), "item_id"].iloc[0]
        raise ValueError(f"items table repeats item ids, first {first!r}; deduplicate it")
    selected = items[items["item_type"].isin(list(item_types))]
    present = set(selected["item_type"])
    absent = [t for t in item_types if t not in present]
    if absent:
        raise ValueError(
            f"item type(s) {absent} of product {product!r} have no rows in the items "
            f"table (its types: {sorted(set(items['item_type']))}); fix the product's "
            f"item_types"
        )

    keep = np.ones(len(selected), dtype=bool)
    ids = selected["item_id"].tolist()
    for name, table in (("hgnn", hgnn if config.use_hgnn else None),
                        ("llm", llm if config.use_llm else None)):
        if table is None:
            continue
        index = table.index()
        has = np.array([i in index for i in ids], dtype=bool)
        dropped[f"items_without_{name}_embedding"] += int((keep & ~has).sum())
        keep &= has
    excluded_ids = set(selected.loc[~keep, "item_id"])
    selected = selected[keep]
    if selected.empty:
        raise ValueError(
            f"no item of product {product!r} has every embedding the settings "
            f"require (use_hgnn={config.use_hgnn}, use_llm={config.use_llm}); check "
            f"that the embeddings cover the items table"
        )

    ids = selected["item_id"].tolist()
    dense_parts = []
    if config.use_hgnn:
        dense_parts.append(hgnn.select(ids))
    if config.use_llm:
        dense_parts.append(llm.select(ids))
    tokens, vocabs = [], []
    for name in config.item_fields:
        vocab, matrix, truncated = encode_item_field(
            name, selected[name].tolist(), config.min_category_count)
        dropped[f"item_tokens_truncated_{name}"] += truncated
        vocabs.append(vocab)
        tokens.append(matrix)
    history_rows = torch.tensor([encoder.row_of[i] for i in ids], dtype=torch.int64)
    return ProductItems(
        item_ids=ids,
        item_types=selected["item_type"].tolist(),
        dense=torch.from_numpy(np.concatenate(dense_parts, axis=1)),
        tokens=tokens,
        vocabs=vocabs,
        history_rows=history_rows,
        excluded_ids=excluded_ids,
    )


def _pairs(table: pd.DataFrame, name: str, dropped: Counter) -> pd.DataFrame:
    pairs = table[list(INTERACTION_COLUMNS)].astype(str)
    unique = pairs.drop_duplicates()
    dropped[f"{name}_duplicate_pairs"] += len(pairs) - len(unique)
    return unique


def _positive_pairs(
    table: pd.DataFrame, name: str, min_weight: float | None, dropped: Counter
) -> pd.DataFrame:
    if min_weight is None:
        return table
    check_columns(table, ("weight",), name)
    positive = table["weight"].to_numpy() >= min_weight
    dropped[f"{name}_rows_below_positive_min_weight"] += int((~positive).sum())
    return table[positive]


def _grouped_rows(users: np.ndarray, rows: np.ndarray, num_users: int) -> list[np.ndarray]:
    order = np.lexsort((rows, users))
    bounds = np.searchsorted(users[order], np.arange(num_users + 1))
    ordered = rows[order]
    return [ordered[bounds[u]:bounds[u + 1]] for u in range(num_users)]


def build_training_data(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    items: ProductItems,
    encoder: UserEncoder,
    users: pd.DataFrame | None,
    dropped: Counter,
    positive_min_weight: float | None = None,
) -> TrainingData:
    """Precompute user inputs, training pairs and validation targets.

    Training pairs are the unique ``(user, item)`` pairs of ``train`` whose
    item belongs to the product and whose ``weight`` reaches
    ``positive_min_weight`` (when set). History means use every unique
    training pair whose item has a history embedding, whatever its type or
    weight. Validation targets are the product pairs of ``valid`` that reach
    the same weight and are not already training pairs.

    Raises:
        ValueError: if a table lacks columns or no training pair remains.
    """
    check_columns(train, INTERACTION_COLUMNS, "train")
    check_columns(valid, INTERACTION_COLUMNS, "valid")
    train_pairs = _pairs(train, "train", dropped)
    positive = _positive_pairs(train, "train", positive_min_weight, dropped)
    positive_pairs = positive[list(INTERACTION_COLUMNS)].astype(str).drop_duplicates()
    valid_pairs = _pairs(
        _positive_pairs(valid, "valid", positive_min_weight, dropped), "valid", dropped)

    user_ids = sorted(set(train_pairs["user_id"]) | set(valid_pairs["user_id"]))
    user_row = {u: k for k, u in enumerate(user_ids)}
    num_users = len(user_ids)

    # History sums over every item type that has embeddings.
    history_row = train_pairs["item_id"].map(encoder.row_of)
    known = history_row.notna().to_numpy()
    dropped["train_items_without_history_embedding"] += int((~known).sum())
    hist_users = torch.from_numpy(train_pairs["user_id"].map(user_row).to_numpy()[known])
    hist_rows = torch.from_numpy(history_row.to_numpy()[known].astype(np.int64))
    num_types, dim = len(encoder.history_types), encoder.history_dim
    flat = hist_users * num_types + torch.from_numpy(encoder.row_type)[hist_rows]
    history_sum = torch.zeros((num_users * num_types, dim))
    history_sum.index_add_(0, flat, encoder.matrix[hist_rows])
    history_count = torch.zeros(num_users * num_types)
    history_count.index_add_(0, flat, torch.ones(len(flat)))

    # Training pairs of the product's items.
    train_item = positive_pairs["item_id"].map(items.index)
    in_product = train_item.notna().to_numpy()
    excluded = positive_pairs["item_id"].isin(items.excluded_ids).to_numpy()
    dropped["train_pairs_on_items_without_embedding"] += int(excluded.sum())
    dropped["train_pairs_of_other_item_types"] += int((~in_product & ~excluded).sum())
    example_users = positive_pairs["user_id"].map(user_row).to_numpy()[in_product]
    example_items = train_item.to_numpy()[in_product].astype(np.int64)
    if len(example_items) == 0:
        raise ValueError(
            "no training interaction is on an item of this product; check the "
            "product's item_types against the train split"
        )
    popularity = np.bincount(example_items, minlength=len(items.item_ids))
    # Every training interaction counts as seen, whatever its weight: ranking
    # leaves out what the user already consumed.
    seen_item = train_pairs["item_id"].map(items.index)
    seen_known = seen_item.notna().to_numpy()
    seen = _grouped_rows(train_pairs["user_id"].map(user_row).to_numpy()[seen_known],
                         seen_item.to_numpy()[seen_known].astype(np.int64), num_users)

    valid_users, valid_targets = _validation_targets(
        valid_pairs, items, user_row, seen, dropped)

    if users is not None and encoder.categorical + encoder.numeric:
        check_columns(users, ("user_id",), "users")
        records = users.assign(user_id=users["user_id"].astype(str)).set_index("user_id")
        features = [records.loc[u].to_dict() if u in records.index else None
                    for u in user_ids]
        dropped["users_without_features"] += sum(f is None for f in features)
    else:
        features = [None] * num_users
    categorical, numeric = encoder.feature_indices(features)

    logger.info(
        "built training data: %d users, %d training pairs, %d valid users, %d items",
        num_users, len(example_items), len(valid_users), len(items.item_ids))
    return TrainingData(
        user_ids=user_ids,
        history_sum=history_sum.view(num_users, num_types, dim),
        history_count=history_count.view(num_users, num_types),
        categorical=categorical,
        numeric=numeric,
        example_users=torch.from_numpy(example_users.astype(np.int64)),
        example_items=torch.from_numpy(example_items),
        popularity=popularity,
        seen=seen,
        valid_users=valid_users,
        valid_targets=valid_targets,
        dropped=dict(dropped),
    )


def _validation_targets(
    valid_pairs: pd.DataFrame,
    items: ProductItems,
    user_row: dict[str, int],
    seen: list[np.ndarray],
    dropped: Counter,
) -> tuple[np.ndarray, list[np.ndarray]]:
    item_row = valid_pairs["item_id"].map(items.index)
    in_product = item_row.notna().to_numpy()
    excluded = valid_pairs["item_id"].isin(items.excluded_ids).to_numpy()
    dropped["valid_pairs_on_items_without_embedding"] += int(excluded.sum())
    dropped["valid_pairs_of_other_item_types"] += int((~in_product & ~excluded).sum())
    users = valid_pairs["user_id"].map(user_row).to_numpy()[in_product]
    rows = item_row.to_numpy()[in_product].astype(np.int64)
    grouped = _grouped_rows(users, rows, len(user_row))

    valid_users, valid_targets = [], []
    for user, targets in enumerate(grouped):
        if len(targets) == 0:
            continue
        fresh = np.setdiff1d(targets, seen[user], assume_unique=True)
        dropped["valid_pairs_seen_in_train"] += len(targets) - len(fresh)
        if len(fresh):
            valid_users.append(user)
            valid_targets.append(fresh)
    return np.asarray(valid_users, dtype=np.int64), valid_targets
