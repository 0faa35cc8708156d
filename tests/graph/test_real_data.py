"""The graph of the real MovieLens-1M and Last.fm-2k datasets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from gfm.data import load_dataset
from gfm.graph import GraphConfig, build_graph


@pytest.fixture(scope="module")
def movielens(data_dir: Path):
    return load_dataset("movielens-1m", data_dir)


@pytest.fixture(scope="module")
def lastfm(data_dir: Path):
    return load_dataset("lastfm-2k", data_dir)


@pytest.mark.slow
def test_movielens_graph(movielens):
    # Ratings span 2000 to 2003, so a 90-day window would keep few of them.
    config = GraphConfig(
        window_days=None, max_items_per_user=None, max_distance=20, top_k=30
    )
    result = build_graph(movielens.interactions, movielens.items, None, config)

    stats = result.stats
    assert stats["nodes"] == {"movie": 3883}
    assert stats["relations"] == ["movie__co__movie"]
    assert stats["interactions"]["rows"] == 1_000_209
    assert stats["interactions_dropped"]["unknown_item"] == 0
    # 3,706 of the 3,883 movies have ratings.
    assert stats["items_without_interactions"] == {"movie": 177}
    assert stats["isolated_nodes"]["movie"] >= 177
    store = result.data["movie", "co", "movie"]
    assert store.edge_index.size(1) == 2 * stats["item_pairs"]["kept"]
    assert torch.all(store.edge_count >= 2)
    assert torch.all((store.edge_weight > 0) & (store.edge_weight <= 1))
    degree = stats["degree"]["node_types"]["movie"]
    assert degree["p50"] >= 30
    assert stats["co_occurrences"]["kept"] < stats["co_occurrences"]["possible"]


def test_lastfm_graph(lastfm):
    config = GraphConfig(window_days=None)
    result = build_graph(lastfm.interactions, lastfm.items, None, config)

    stats = result.stats
    assert stats["nodes"] == {"artist": 17_632, "tag": 11_946}
    assert stats["relations"] == [
        "artist__co__artist",
        "artist__co__tag",
        "tag__co__artist",
        "tag__co__tag",
    ]
    assert stats["edges"]["artist__co__tag"] == stats["edges"]["tag__co__artist"]
    # Listens carry no timestamp, but tag applications do.
    assert stats["interactions"]["undated"] == 92_834
    assert stats["items_without_interactions"]["artist"] == 0
    assert stats["isolated_nodes"]["tag"] > 0


def test_lastfm_window_keeps_undated_listens(lastfm):
    result = build_graph(lastfm.interactions, lastfm.items, None, GraphConfig())

    stats = result.stats
    assert stats["window"]["latest_timestamp"].startswith("2011-05-09")
    assert stats["window"]["cutoff"].startswith("2011-02-08")
    # The figures of docs/graph.md: most dated rows predate the cutoff, but
    # a (user, tag) pair is dated by its latest application, so the window
    # drops fewer rows than that.
    timestamps = lastfm.interactions["timestamp"]
    cutoff = pd.Timestamp(stats["window"]["cutoff"])
    assert int(timestamps.notna().sum()) == 186_474
    assert int((timestamps < cutoff).sum()) == 179_282
    dated = lastfm.interactions[timestamps.notna()]
    assert dated.groupby(["user_id", "item_id"]).ngroups == 35_813
    assert stats["user_items_dropped"]["window"] == 32_920
    assert stats["interactions_dropped"]["window"] == 150_207
    assert stats["interactions_dropped"]["untimed"] == 0
    assert stats["edges"]["artist__co__artist"] > 100_000
