"""A MovieLens-1M slice, Last.fm-2k and stand-in embeddings for the two-tower tests.

The stand-ins (``gfm.twotower.stand_ins``) cover every catalog item, rated or
not, as the real featurization and HGNN artifacts do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gfm.data import Dataset, load_dataset
from gfm.data.splits import split_dataset
from gfm.embeddings import ItemEmbeddings
from gfm.twotower import TwoTowerConfig, train_two_tower
from gfm.twotower.stand_ins import genre_embeddings, svd_embeddings

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
