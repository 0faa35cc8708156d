"""A MovieLens-1M slice and stand-in item embeddings for the two-tower tests.

The HGNN stand-in is a truncated SVD of the training user-item matrix, so it
carries real collaborative signal; the LLM stand-in is a random projection
of each movie's genres. Both cover every catalog movie, rated or not, as
the real artifacts do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gfm.data import Dataset, load_dataset
from gfm.data.splits import split_dataset
from gfm.embeddings import ItemEmbeddings
from gfm.twotower import TwoTowerConfig, train_two_tower

# Users 1..SLICE_USERS of MovieLens-1M (about 170k ratings).
SLICE_USERS = 1000
SLICE_SPLIT = {"protocol": "leave_last_n", "n_valid": 3, "n_test": 1}

# One thread: tests run next to other jobs, and OpenMP threads spinning on
# an oversubscribed CPU slow a step down many times over.
FAST_CONFIG = {"tower_dims": [64, 32], "max_epochs": 4, "batch_size": 512,
               "num_threads": 1}


def user_slice(dataset: Dataset, max_user: int) -> Dataset:
    """Keep the interactions and features of users ``1..max_user`` (the full catalog)."""
    keep = dataset.interactions["user_id"].astype(int) <= max_user
    users = dataset.users[dataset.users["user_id"].astype(int) <= max_user]
    return Dataset(name=f"{dataset.name}-users-1-{max_user}", items=dataset.items,
                   interactions=dataset.interactions[keep].reset_index(drop=True),
                   users=users.reset_index(drop=True), report={})


def svd_embeddings(train: pd.DataFrame, items: pd.DataFrame, dim: int) -> ItemEmbeddings:
    """Item factors of a rank-``dim`` SVD of the binary training user-item matrix."""
    item_row = {item_id: k for k, item_id in enumerate(items["item_id"])}
    user_codes, _ = pd.factorize(train["user_id"])
    indices = torch.tensor(np.stack([train["item_id"].map(item_row).to_numpy(), user_codes]))
    matrix = torch.sparse_coo_tensor(
        indices, torch.ones(len(train)), (len(items), int(user_codes.max()) + 1),
        check_invariants=True).coalesce()
    torch.manual_seed(0)
    left, singular, _ = torch.svd_lowrank(matrix, q=dim, niter=4)
    factors = (left * singular.sqrt()).numpy().astype(np.float32)
    return ItemEmbeddings(items["item_id"].tolist(), items["item_type"].tolist(), factors,
                          {"model": "svd-stand-in"})


def genre_embeddings(items: pd.DataFrame, dim: int) -> ItemEmbeddings:
    """Unit-norm random projections of genre multi-hot vectors, plus a little noise."""
    genres = sorted({g for row in items["genres"] for g in row})
    multi_hot = np.zeros((len(items), len(genres)), dtype=np.float32)
    for row, values in enumerate(items["genres"]):
        for genre in values:
            multi_hot[row, genres.index(genre)] = 1.0
    rng = np.random.default_rng(0)
    vectors = multi_hot @ rng.normal(size=(len(genres), dim)).astype(np.float32)
    vectors += 0.1 * rng.normal(size=vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return ItemEmbeddings(items["item_id"].tolist(), items["item_type"].tolist(), vectors,
                          {"model": "genre-stand-in"})


@pytest.fixture(scope="session")
def ml1m_dataset(data_dir: Path) -> Dataset:
    """The MovieLens-1M slice as a :class:`Dataset`."""
    return user_slice(load_dataset("movielens-1m", data_dir), SLICE_USERS)


@pytest.fixture(scope="session")
def ml1m(ml1m_dataset: Dataset) -> dict:
    """The slice's ``train``, ``valid``, ``test``, ``items``, ``users``, ``hgnn``, ``llm``."""
    split = split_dataset(ml1m_dataset, SLICE_SPLIT)
    return {
        "split": split,
        "train": split.train,
        "valid": split.valid,
        "test": split.test,
        "items": ml1m_dataset.items,
        "users": ml1m_dataset.users,
        "hgnn": svd_embeddings(split.train, ml1m_dataset.items, 32),
        "llm": genre_embeddings(ml1m_dataset.items, 48),
    }


@pytest.fixture(scope="session")
def trained(ml1m: dict):
    """One model trained on the slice, shared by the read-only tests."""
    return train_two_tower(
        product="movies", item_types=["movie"],
        train=ml1m["train"], valid=ml1m["valid"], items=ml1m["items"],
        users=ml1m["users"], hgnn=ml1m["hgnn"], llm=ml1m["llm"],
        config=TwoTowerConfig.from_dict(FAST_CONFIG))


@pytest.fixture(scope="session")
def lastfm(data_dir: Path) -> dict:
    """Last.fm-2k split by the shipped protocols, with SVD and random stand-ins."""
    dataset = load_dataset("lastfm-2k", data_dir)
    split = split_dataset(dataset, {"protocols": {"listen": "random", "tag": "temporal"},
                                    "window_days": None, "valid_days": 60,
                                    "test_days": 120})
    rng = np.random.default_rng(0)
    random = rng.normal(size=(len(dataset.items), 16)).astype(np.float32)
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    llm = ItemEmbeddings(dataset.items["item_id"].tolist(),
                         dataset.items["item_type"].tolist(), random)
    return {"dataset": dataset, "split": split,
            "hgnn": svd_embeddings(split.train, dataset.items, 16), "llm": llm}


@pytest.fixture(scope="session")
def fast_settings() -> dict:
    """Settings for quick training runs, for fixtures wider than one test."""
    return dict(FAST_CONFIG)


@pytest.fixture
def fast_config(fast_settings: dict) -> dict:
    """Settings for quick training runs; a fresh dict each test may change."""
    return dict(fast_settings)
