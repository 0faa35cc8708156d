"""Serving bundles for ``benchmarks/serving.py``.

Latency depends on the catalog size, the vector dimension, the user tower's
shape and the history lengths, not on the model's quality. So both bundles
use the default tower widths ``(256, 128)`` and train briefly, or not at all.

* ``ml1m_bundle``: every MovieLens-1M movie and user, with every user's full
  training history for known-user requests. The two-tower model trains one
  epoch on each user's last 20 training ratings, over item factors from an
  SVD of the training matrix that stand in for HGNN embeddings.
* ``synthetic_bundle``: ``num_items`` items with random unit item vectors,
  an untrained user tower and 10,000 users with 20 history items each.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gfm import settings
from gfm.embeddings import ItemEmbeddings
from gfm.twotower import ProductModel, TwoTowerConfig, train_two_tower
from gfm.twotower.bundle import export_bundle
from gfm.twotower.features import UserEncoder
from gfm.twotower.model import UserTower

logger = logging.getLogger("gfm.benchmarks.serving")

SVD_DIM = 32
RATINGS_PER_USER = 20


def svd_item_factors(train: pd.DataFrame, items: pd.DataFrame, dim: int) -> ItemEmbeddings:
    """Rank-``dim`` item factors of the binary item-user training matrix.

    Catalog items without training interactions get zero rows.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.linalg import svds

    rows = pd.Index(items["item_id"]).get_indexer(train["item_id"])
    columns, _ = pd.factorize(train["user_id"])
    matrix = csr_matrix((np.ones(len(train), dtype=np.float32), (rows, columns)),
                        shape=(len(items), columns.max() + 1))
    matrix.data[:] = 1.0
    left, singular, _ = svds(matrix, k=dim, random_state=0)
    factors = (left * np.sqrt(singular)).astype(np.float32)
    return ItemEmbeddings(items["item_id"].tolist(), items["item_type"].tolist(), factors,
                          {"model": "svd-of-train", "dim": dim})


def ml1m_bundle(uri: Path) -> str:
    """Export a MovieLens-1M bundle below ``uri`` and return its path."""
    from gfm.data.movielens import load_movielens_1m
    from gfm.data.splits import leave_last_n_split

    if (uri / "bundle.json").exists():
        return str(uri)
    # The loader downloads missing files; a benchmark must not reach out.
    if not (settings.data_dir() / "ml-1m" / "ratings.dat").exists():
        raise SystemExit(f"no ml-1m/ratings.dat below {settings.data_dir()}: set "
                         "GFM_DATA_DIR to the folder that contains ml-1m/")
    started = time.perf_counter()
    dataset = load_movielens_1m(settings.data_dir())
    split = leave_last_n_split(dataset.interactions)
    factors = svd_item_factors(split.train, dataset.items, SVD_DIM)
    recent = (split.train.sort_values(["user_id", "timestamp"])
              .groupby("user_id").tail(RATINGS_PER_USER))
    config = TwoTowerConfig(use_llm=False, max_epochs=1, batch_size=1024)
    model = train_two_tower("movie", ["movie"], recent, split.valid, dataset.items,
                            users=dataset.users, hgnn=factors, llm=None, config=config)
    export_bundle(uri, {"movie": model}, histories=split.train, users=dataset.users,
                  hgnn=factors, llm=None, model_version="bench-ml1m",
                  model_cards={"movie": {"data": {"dataset": dataset.name}}})
    logger.info("built the MovieLens-1M bundle in %.0f s", time.perf_counter() - started)
    return str(uri)


def synthetic_bundle(uri: Path, num_items: int, seed: int = 0) -> str:
    """Export a one-product bundle of ``num_items`` random items below ``uri``."""
    if (uri / "bundle.json").exists():
        return str(uri)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    item_ids = [f"item:{i}" for i in range(num_items)]
    item_types = ["item"] * num_items

    history = rng.standard_normal((num_items, SVD_DIM), dtype=np.float32)
    embeddings = ItemEmbeddings(item_ids, item_types, history, {"model": "random"})
    vectors = rng.standard_normal((num_items, 128), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    config = TwoTowerConfig(use_llm=False, use_user_features=False)
    torch.manual_seed(seed)
    tower = UserTower(num_history_types=1, history_dim=SVD_DIM, categorical_sizes=[],
                      categorical_dim=config.categorical_dim, num_numeric=0,
                      tower_dims=config.tower_dims)
    encoder = UserEncoder(embeddings, "hgnn")
    popularity = rng.zipf(1.5, num_items).clip(max=1_000_000)
    model = ProductModel("item", ["item"], item_ids, item_types, vectors, popularity,
                         tower, encoder, config, metrics={"best_valid_recall": None})

    users = np.repeat([f"user:{u}" for u in range(10_000)], 20)
    histories = pd.DataFrame({"user_id": users,
                              "item_id": [item_ids[i] for i in
                                          rng.integers(0, num_items, len(users))]})
    export_bundle(uri, {"item": model}, histories=histories, users=None, hgnn=embeddings,
                  llm=None, model_version=f"bench-synthetic-{num_items}",
                  model_cards={"item": {"data": {"dataset": "synthetic"}}})
    logger.info("built the %d-item synthetic bundle in %.0f s", num_items,
                time.perf_counter() - started)
    return str(uri)
