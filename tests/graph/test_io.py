"""save_graph and load_graph, on local folders and gs://."""

from __future__ import annotations

import pytest
import torch

from gfm import storage
from gfm.graph import GraphConfig, build_graph, load_graph, save_graph

from .conftest import make_features


def _assert_same_graph(loaded, result):
    assert loaded.stats == result.stats
    assert loaded.data.node_types == result.data.node_types
    assert loaded.data.edge_types == result.data.edge_types
    for node_type in result.data.node_types:
        assert loaded.data[node_type].item_ids == result.data[node_type].item_ids
        assert torch.equal(loaded.data[node_type].x, result.data[node_type].x)
    for edge_type in result.data.edge_types:
        for key in ("edge_index", "edge_weight", "edge_count"):
            assert torch.equal(loaded.data[edge_type][key], result.data[edge_type][key])


@pytest.fixture
def built(random_tables):
    interactions, items = random_tables
    config = GraphConfig(window_days=None, min_count=1)
    return build_graph(interactions, items, make_features(items), config)


def test_round_trip_local(built, tmp_path):
    save_graph(built, tmp_path / "graph")

    assert sorted(p.name for p in (tmp_path / "graph").iterdir()) == [
        "graph.pt",
        "stats.json",
    ]
    _assert_same_graph(load_graph(tmp_path / "graph"), built)


def test_round_trip_gcs(built, gcs_emulator):
    bucket = gcs_emulator.create_bucket("graph-io")
    save_graph(built, f"{bucket}/run-1/graph")

    assert storage.list_files(f"{bucket}/run-1/graph") == [
        f"{bucket}/run-1/graph/graph.pt",
        f"{bucket}/run-1/graph/stats.json",
    ]
    _assert_same_graph(load_graph(f"{bucket}/run-1/graph"), built)


def test_load_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_graph(tmp_path / "absent")


def test_load_rejects_other_objects(tmp_path):
    storage.write_torch(tmp_path / "graph.pt", {"not": "a graph"})
    storage.write_json(tmp_path / "stats.json", {})
    with pytest.raises(ValueError, match="it contains a dict, not a HeteroData"):
        load_graph(tmp_path)
