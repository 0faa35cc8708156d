"""Tests of the input checks that train_hgnn runs before it starts Ray."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch_geometric.data import HeteroData

from gfm import storage
from gfm.hgnn import HGNNConfig, train_hgnn
from gfm.hgnn.distributed import check_run_folder
from gfm.hgnn.train import default_run_name

from .test_split import symmetric_graph

SMALL = {"num_workers": 1, "hidden_dim": 8, "out_dim": 8, "num_neighbors": [2, 2]}


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Fail the test if train_hgnn gets as far as starting Ray."""

    def ray_started(config):
        raise AssertionError("train_hgnn started Ray before rejecting its inputs")

    monkeypatch.setattr("gfm.hgnn.distributed.ray_cluster", ray_started)


def save_graph(data: HeteroData, folder: Path) -> str:
    for node_type in data.node_types:
        count = data[node_type].x.shape[0]
        data[node_type].item_ids = [f"{node_type}:{i}" for i in range(count)]
    storage.write_torch(folder / "graph.pt", data)
    storage.write_json(folder / "stats.json", {})
    return str(folder)


def test_graph_without_edges_raises(tmp_path):
    data = HeteroData()
    data["movie"].x = torch.randn(5, 4)
    graph = save_graph(data, tmp_path / "graph")
    config = HGNNConfig.from_dict(SMALL)
    with pytest.raises(ValueError, match="the graph has no edge types"):
        train_hgnn(graph, str(tmp_path / "out"), config)


def test_float_edge_index_raises(tmp_path):
    data = symmetric_graph()
    edge_index = data["movie", "co", "tag"].edge_index
    data["movie", "co", "tag"].edge_index = edge_index.float()
    graph = save_graph(data, tmp_path / "graph")
    with pytest.raises(ValueError, match="node indices must be integers"):
        train_hgnn(graph, str(tmp_path / "out"), HGNNConfig.from_dict(SMALL))


def test_epoch_without_steps_raises(tmp_path):
    graph = save_graph(symmetric_graph(), tmp_path / "graph")
    config = HGNNConfig.from_dict(dict(SMALL, num_workers=2, edges_per_relation=1))
    with pytest.raises(ValueError, match="each of the 2 workers no training pairs"):
        train_hgnn(graph, str(tmp_path / "out"), config)


def test_missing_warm_start_raises(tmp_path):
    graph = save_graph(symmetric_graph(), tmp_path / "graph")
    missing = str(tmp_path / "no-such-run")
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        train_hgnn(
            graph,
            str(tmp_path / "out"),
            HGNNConfig.from_dict(SMALL),
            resume_from=missing,
        )


def test_existing_run_folder_raises(tmp_path):
    graph = save_graph(symmetric_graph(), tmp_path / "graph")
    run_folder = tmp_path / "ray" / "weekly"
    run_folder.mkdir(parents=True)
    (run_folder / "checkpoint_manager_snapshot.json").write_text("{}")
    config = HGNNConfig.from_dict(
        dict(SMALL, run_name="weekly", storage_path=str(tmp_path / "ray"))
    )
    with pytest.raises(FileExistsError) as raised:
        train_hgnn(graph, str(tmp_path / "out"), config)
    assert str(run_folder) in str(raised.value)
    assert "resume_run: true" in str(raised.value)
    assert "run_name" in str(raised.value)


def test_resume_run_accepts_either_folder(tmp_path):
    check_run_folder(str(tmp_path), "new", resume_run=True)
    (tmp_path / "old").mkdir()
    check_run_folder(str(tmp_path), "old", resume_run=True)
    check_run_folder(str(tmp_path), "new", resume_run=False)


def test_default_run_names_differ():
    names = {default_run_name() for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert re.fullmatch(r"hgnn-\d{8}-\d{6}-\d{6}-[0-9a-f]{6}", name), name
