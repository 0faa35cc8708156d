"""The train_hgnn KFP component, called through ``python_func``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from kfp import dsl
from torch_geometric.data import HeteroData

from gfm import storage
from gfm.components import encode_parameter
from gfm.components.hgnn import train_hgnn
from gfm.embeddings import ItemEmbeddings
from gfm.hgnn import load_model
from gfm.hgnn.artifacts import read_state

pytestmark = pytest.mark.slow


SMALL = {"num_workers": 1, "hidden_dim": 32, "out_dim": 16}


def _artifact(cls, name: str, folder: Path):
    return cls(name=name, uri=str(folder), metadata={})


def _artifacts(graph: str, folder: Path) -> dict:
    return {
        "graph": _artifact(dsl.Artifact, "graph", Path(graph)),
        "model": _artifact(dsl.Model, "model", folder / "model"),
        "embeddings": _artifact(dsl.Artifact, "embeddings", folder / "embeddings"),
        "metrics": _artifact(dsl.Metrics, "metrics", folder / "metrics"),
    }


@pytest.fixture(scope="module")
def trained(ray_local, movielens_graph, tmp_path_factory) -> tuple[dict, Path]:
    """The component's artifacts after 2 epochs, and their folder."""
    folder = tmp_path_factory.mktemp("component")
    artifacts = _artifacts(movielens_graph, folder)
    # The pipeline sends settings JSON-encoded; seeds and counts stay ints.
    config = encode_parameter(dict(SMALL, max_epochs=2))
    train_hgnn.python_func(**artifacts, config=config)
    return artifacts, folder


def test_component_writes_model_embeddings_metrics(trained):
    artifacts, tmp_path = trained
    model = load_model(tmp_path / "model")
    assert model.config.max_epochs == 2
    assert model.network.out_dim == 16
    history = storage.read_json(tmp_path / "model" / "metrics.json")["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    embeddings = ItemEmbeddings.load(tmp_path / "embeddings")
    assert embeddings.dim == 16
    assert np.allclose(np.linalg.norm(embeddings.matrix, axis=1), 1.0, atol=1e-5)

    metadata = artifacts["model"].metadata
    assert metadata["epochs"] == 2
    assert metadata["num_items"] == len(embeddings)
    assert 0.5 < metadata["best_val_auc"] <= 1.0
    assert artifacts["embeddings"].metadata["items_per_type"] == {
        "movie": len(embeddings)
    }
    assert artifacts["embeddings"].metadata["items_without_edges"]["movie"] >= 12
    logged = artifacts["metrics"].metadata
    assert logged["best_val_auc"] == metadata["best_val_auc"]
    assert logged["num_items"] == len(embeddings)


def test_component_keeps_checkpoint_for_warm_start(trained, movielens_graph, tmp_path):
    artifacts, folder = trained
    checkpoint_uri = artifacts["model"].metadata["checkpoint_uri"]
    # The run trained in a scratch folder that is gone now, so the recorded
    # checkpoint must be the copy in the model folder.
    assert checkpoint_uri == str(folder / "model" / "checkpoint")
    assert read_state(checkpoint_uri)["epoch"] == 2
    metrics = storage.read_json(folder / "model" / "metrics.json")
    assert metrics["checkpoint_uri"] == checkpoint_uri
    assert metrics["run_uri"] is None

    again = _artifacts(movielens_graph, tmp_path)
    train_hgnn.python_func(
        **again,
        config=encode_parameter(dict(SMALL, max_epochs=1)),
        warm_start_uri=checkpoint_uri,
    )
    warm_start = storage.read_json(tmp_path / "model" / "metrics.json")["warm_start"]
    assert warm_start["uri"] == checkpoint_uri
    assert warm_start["copied"] > 0
    assert warm_start["new"] == 0
    assert warm_start["unused"] == 0
    assert again["model"].metadata["epochs"] == 1
    assert read_state(again["model"].metadata["checkpoint_uri"])["epoch"] == 1


def test_component_rejects_unknown_setting(tmp_path, movielens_graph):
    artifacts = _artifacts(movielens_graph, tmp_path)
    with pytest.raises(ValueError, match="unknown HGNN settings \\['epochs'\\]"):
        train_hgnn.python_func(**artifacts, config={"epochs": 3})


def _reject_constant(name: str):
    raise ValueError(f"metrics.json contains {name}, which is not JSON")


def _graph_without_validation_pairs(folder: Path) -> str:
    # 4 pairs: round(4 * valid_fraction 0.1) = 0 are held out.
    data = HeteroData()
    data["movie"].x = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
    data["movie"].item_ids = [f"movie:{i}" for i in range(12)]
    pairs = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    data["movie", "co", "movie"].edge_index = torch.cat([pairs, pairs.flip(0)], 1)
    storage.write_torch(folder / "graph.pt", data)
    storage.write_json(folder / "stats.json", {})
    return str(folder)


def test_component_without_validation_pairs(ray_local, tmp_path):
    graph = _graph_without_validation_pairs(tmp_path / "graph")
    artifacts = _artifacts(graph, tmp_path)
    config = dict(SMALL, max_epochs=3, patience=1, num_neighbors=[2, 2])
    train_hgnn.python_func(**artifacts, config=encode_parameter(config))

    text = (tmp_path / "model" / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=_reject_constant)
    summary = metrics["summary"]
    assert summary["best_val_auc"] is None
    assert summary["best_score"] is None
    assert metrics["history"][0]["val_auc"] is None
    # No validation signal: all epochs run and the last one's weights ship.
    assert summary["epochs"] == 3
    assert summary["best_epoch"] == 3
    assert summary["stopped_early"] is False
    logged = artifacts["metrics"].metadata
    assert "best_val_auc" not in logged
    assert "best_val_hr" not in logged
    assert logged["epochs"] == 3
