"""Small real graphs and one local Ray cluster for the HGNN tests.

The graphs are slices of MovieLens-1M and Last.fm-2k built with
``gfm.graph.build_graph``. Their features come from the catalog itself
(genres and release decade for movies, the tag vocabulary for artists and
tags), which carries real signal without loading a language model.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gfm.data import load_dataset
from gfm.embeddings import ItemEmbeddings
from gfm.graph import GraphConfig, build_graph, save_graph
from gfm.hgnn.distributed import use_loopback

# Ray reads this when it is imported: keep the test cluster on 127.0.0.1.
use_loopback()

# Movies and artists that are in the slice's catalog but get no interaction,
# so the graph has isolated (cold) nodes.
NUM_COLD_ITEMS = 12


def _one_hot_features(
    items: pd.DataFrame, vocabulary: list[str], labels
) -> ItemEmbeddings:
    position = {label: i for i, label in enumerate(vocabulary)}
    matrix = np.zeros((len(items), len(vocabulary)), dtype=np.float32)
    for row, item_labels in enumerate(labels):
        for label in item_labels:
            if label in position:
                matrix[row, position[label]] = 1.0
    matrix[:, -1] = 0.5  # A constant column keeps rows without labels non-zero.
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return ItemEmbeddings(
        items["item_id"].tolist(), items["item_type"].tolist(), matrix
    )


def build_movielens_slice(data_dir: Path, folder: Path, num_movies: int = 300) -> str:
    """Build and save a graph of the ``num_movies`` most rated movies."""
    dataset = load_dataset("movielens-1m", data_dir)
    counts = dataset.interactions["item_id"].value_counts()
    hot = counts.index[:num_movies].tolist()
    cold = counts.index[-NUM_COLD_ITEMS:].tolist()
    items = dataset.items[dataset.items["item_id"].isin(hot + cold)].reset_index(
        drop=True
    )
    interactions = dataset.interactions[dataset.interactions["item_id"].isin(hot)]

    genres = sorted(
        {g for gs in items["genres"] for g in (gs if gs is not None else [])}
    )
    decades = [f"{d}s" for d in range(1910, 2010, 10)]
    labels = [
        list(gs if gs is not None else []) + [f"{(int(year) // 10) * 10}s"]
        for gs, year in zip(items["genres"], items["release_year"].fillna(1990))
    ]
    features = _one_hot_features(items, genres + decades + ["bias"], labels)
    result = build_graph(
        interactions,
        items,
        features,
        GraphConfig(window_days=None, top_k=20, max_distance=20, min_count=3),
    )
    save_graph(result, folder)
    return str(folder)


def build_lastfm_slice(
    data_dir: Path, folder: Path, num_artists: int = 200, num_tags: int = 80
) -> str:
    """Build and save a graph of the most played artists and most used tags."""
    dataset = load_dataset("lastfm-2k", data_dir)
    items = dataset.items
    counts = dataset.interactions["item_id"].value_counts()
    artists = [i for i in counts.index if i.startswith("artist:")]
    tags = [i for i in counts.index if i.startswith("tag:")][:num_tags]
    hot = artists[:num_artists] + tags
    cold = artists[-NUM_COLD_ITEMS:]
    items = items[items["item_id"].isin(hot + cold)].reset_index(drop=True)
    interactions = dataset.interactions[dataset.interactions["item_id"].isin(hot)]

    tag_names = items.loc[items["item_type"] == "tag", "title"].tolist()
    # A tag is labelled with itself, an artist with the tags users gave it.
    labels = []
    for kind, title, tag_list in zip(items["item_type"], items["title"], items["tags"]):
        if kind == "tag":
            labels.append([title])
        else:
            labels.append(list(tag_list) if tag_list is not None else [])
    features = _one_hot_features(items, tag_names + ["bias"], labels)
    result = build_graph(
        interactions,
        items,
        features,
        GraphConfig(window_days=None, top_k=15, max_distance=20, min_count=2),
    )
    save_graph(result, folder)
    return str(folder)


@pytest.fixture(scope="package")
def movielens_graph(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a MovieLens-1M slice graph: 300 movies plus cold ones."""
    return build_movielens_slice(data_dir, tmp_path_factory.mktemp("ml-graph"))


@pytest.fixture(scope="package")
def lastfm_graph(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a Last.fm-2k slice graph: artists and tags, three relations."""
    return build_lastfm_slice(data_dir, tmp_path_factory.mktemp("lastfm-graph"))


@dataclass
class RayLocal:
    """The package's local Ray cluster.

    Attributes:
        dashboard_url: ``http://127.0.0.1:PORT`` of its dashboard, the
            address ``JobSubmissionClient`` takes.
    """

    dashboard_url: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="package")
def ray_local() -> Iterator[RayLocal]:
    """One local Ray cluster with 2 CPUs for every Ray test of the package.

    The dashboard runs on 127.0.0.1 so that jobs can be submitted to it. Jobs
    start ``gfm`` from PATH, so this interpreter's folder goes first on PATH.
    """
    import ray

    path_before = os.environ.get("PATH", "")
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + path_before
    temp_dir = tempfile.mkdtemp(prefix="gfm-ray-t-", dir="/tmp")
    context = ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=_free_port(),
        _temp_dir=temp_dir,
    )
    try:
        yield RayLocal(dashboard_url=f"http://{context.dashboard_url}")
    finally:
        ray.shutdown()
        os.environ["PATH"] = path_before
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run torch on one thread and restore the thread count afterwards.

    On a busy 2-core machine, two torch threads in one process ran several
    times slower than one (docs/hgnn.md).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
