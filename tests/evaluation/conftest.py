"""A real MovieLens-1M slice, its split, stand-in embeddings and trained models.

The slice keeps the first ``SLICE_USERS`` users of MovieLens-1M as loaded by
``gfm.data.load_dataset``. Each user's last two ratings are test and the one
before them validation, and a tenth of the movies are cold. The HGNN stand-in is
a truncated SVD of the training item-user matrix and the LLM stand-in a
unit-norm genre and decade encoding, so both carry real signal and cover
every catalogue movie, as the real artifacts do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from gfm.data import Dataset, load_dataset
from gfm.data.splits import SplitConfig, split_dataset
from gfm.embeddings import ItemEmbeddings

SLICE_USERS = 300
PRODUCT = "movies"
# One thread: torch's two threads wait on each other when other jobs share the
# two cores, which made training several times slower in measurements here.
SMALL_TWO_TOWER = {"tower_dims": [32, 16], "max_epochs": 1, "batch_size": 512,
                   "patience": 1, "num_threads": 1}


def _svd_embeddings(train: pd.DataFrame, items: pd.DataFrame, dim: int) -> ItemEmbeddings:
    row_of = {item_id: row for row, item_id in enumerate(items["item_id"])}
    users, _ = pd.factorize(train["user_id"])
    matrix = sp.csr_matrix(
        (np.ones(len(train)), (train["item_id"].map(row_of).to_numpy(), users)),
        shape=(len(items), users.max() + 1))
    left, singular, _ = svds((matrix > 0).astype(np.float64), k=dim, random_state=0)
    return ItemEmbeddings(items["item_id"].tolist(), items["item_type"].tolist(),
                          (left * np.sqrt(singular)).astype(np.float32),
                          {"model": "svd-stand-in"})


def _genre_embeddings(items: pd.DataFrame) -> ItemEmbeddings:
    genres = sorted({g for values in items["genres"] if values is not None for g in values})
    decades = list(range(1910, 2010, 10))
    matrix = np.full((len(items), len(genres) + len(decades)), 0.05, dtype=np.float32)
    for row, (values, year) in enumerate(zip(items["genres"], items["release_year"])):
        for genre in values or []:
            matrix[row, genres.index(genre)] = 1.0
        if not pd.isna(year):
            decade = min(max(int(year) // 10 * 10, decades[0]), decades[-1])
            matrix[row, len(genres) + decades.index(decade)] = 1.0
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return ItemEmbeddings(items["item_id"].tolist(), items["item_type"].tolist(), matrix,
                          {"model": "genre-stand-in"})


@pytest.fixture(scope="session")
def movielens(data_dir: Path) -> dict:
    """``dataset`` (the slice), ``split``, ``llm`` and ``hgnn`` embeddings."""
    full = load_dataset("movielens-1m", data_dir)
    in_slice = full.interactions["user_id"].astype(int) <= SLICE_USERS
    interactions = full.interactions[in_slice].reset_index(drop=True)
    users = full.users[full.users["user_id"].isin(interactions["user_id"])]
    dataset = Dataset(name="movielens-1m-slice", items=full.items,
                      interactions=interactions, users=users.reset_index(drop=True),
                      report={})
    split = split_dataset(dataset, SplitConfig(protocol="leave_last_n", n_test=2,
                                               n_valid=1, cold_item_fraction=0.1,
                                               cold_item_types=["movie"], seed=0))
    return {
        "dataset": dataset,
        "split": split,
        "llm": _genre_embeddings(full.items),
        "hgnn": _svd_embeddings(split.train, full.items, 24),
    }


@pytest.fixture(scope="session")
def trained_models(movielens: dict) -> dict:
    """Two small two-tower models of ``movies``: with (2T-HGNN) and without HGNN."""
    from gfm.twotower import TwoTowerConfig, train_two_tower

    models = {}
    for name, use_hgnn in (("2t-hgnn", True), ("two-tower", False)):
        models[name] = train_two_tower(
            product=PRODUCT, item_types=["movie"], train=movielens["split"].train,
            valid=movielens["split"].valid, items=movielens["dataset"].items,
            users=movielens["dataset"].users, hgnn=movielens["hgnn"],
            llm=movielens["llm"],
            config=TwoTowerConfig.from_dict(dict(SMALL_TWO_TOWER, use_hgnn=use_hgnn)),
        )
    return models
