"""Fixtures of the featurize tests: small catalogs and real item samples."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import pytest

from gfm.data.schema import ITEMS_SCHEMA

# Items of each type sampled from the real datasets for engine comparisons.
REAL_SAMPLE_PER_TYPE = 150


def make_items(rows: list[dict]) -> pd.DataFrame:
    """Build an items table with every column of ``ITEMS_SCHEMA``."""
    columns = ITEMS_SCHEMA.names
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns)
    frame["release_year"] = frame["release_year"].astype("Int32")
    return frame


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the Hugging Face client off the network in every test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLLM_HOST_IP", "127.0.0.1")


@pytest.fixture
def gfm_logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """``caplog`` that captures the ``gfm`` logger even after an entry point
    configured it not to propagate."""
    monkeypatch.setattr(logging.getLogger("gfm"), "propagate", True)
    caplog.set_level(logging.INFO, logger="gfm")
    return caplog


@pytest.fixture
def small_items() -> pd.DataFrame:
    """Six items of three types, with missing fields."""
    return make_items([
        {"item_id": "movie:1", "item_type": "movie", "title": "Toy Story",
         "genres": ["Animation", "Children's", "Comedy"], "release_year": 1995},
        {"item_id": "movie:2", "item_type": "movie", "title": "Heat",
         "genres": ["Action", "Crime", "Thriller"], "release_year": 1995},
        {"item_id": "movie:3", "item_type": "movie", "title": "Metropolis"},
        {"item_id": "artist:1", "item_type": "artist", "title": "Radiohead",
         "tags": ["alternative", "rock", "british"]},
        {"item_id": "artist:2", "item_type": "artist", "title": "Miles Davis",
         "tags": ["jazz", "trumpet"]},
        {"item_id": "tag:1", "item_type": "tag", "title": "post-rock"},
    ])


@pytest.fixture(scope="session")
def real_items(data_dir: Path) -> pd.DataFrame:
    """A fixed sample of real MovieLens-1M movies and Last.fm-2k artists and tags."""
    from gfm.data import load_dataset

    os.environ.setdefault("GFM_DATA_DIR", str(data_dir))
    parts = []
    for name in ("movielens-1m", "lastfm-2k"):
        items = load_dataset(name, data_dir).items
        for _, group in items.groupby("item_type", sort=True):
            parts.append(group.sample(n=min(REAL_SAMPLE_PER_TYPE, len(group)), random_state=7))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster on 127.0.0.1 for the Ray tests of a module.

    Module scope, because other test folders start Ray with settings of
    their own and ``ray.init`` fails while a cluster is still connected.
    """
    import ray

    from gfm.featurize import RayOptions
    from gfm.featurize.distributed import start_ray

    started = start_ray(RayOptions(num_cpus=2, temp_dir="/tmp/gfm-ray-featurize"))
    yield ray
    if started:
        ray.shutdown()
