"""The train_hgnn KFP component, called through ``python_func``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kfp import dsl

from gfm import storage
from gfm.components import encode_parameter
from gfm.components.hgnn import train_hgnn
from gfm.embeddings import ItemEmbeddings
from gfm.hgnn import load_model

pytestmark = pytest.mark.slow


def _artifact(cls, name: str, folder: Path):
    return cls(name=name, uri=str(folder), metadata={})


def test_component_writes_model_embeddings_metrics(
    ray_local, movielens_graph, tmp_path
):
    artifacts = {
        "graph": _artifact(dsl.Artifact, "graph", Path(movielens_graph)),
        "model": _artifact(dsl.Model, "model", tmp_path / "model"),
        "embeddings": _artifact(dsl.Artifact, "embeddings", tmp_path / "embeddings"),
        "metrics": _artifact(dsl.Metrics, "metrics", tmp_path / "metrics"),
    }
    # The pipeline sends settings JSON-encoded; seeds and counts stay ints.
    config = encode_parameter(
        {"max_epochs": 2, "num_workers": 1, "hidden_dim": 32, "out_dim": 16}
    )
    train_hgnn.python_func(**artifacts, config=config)

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


def test_component_rejects_unknown_setting(tmp_path, movielens_graph):
    artifacts = {
        "graph": _artifact(dsl.Artifact, "graph", Path(movielens_graph)),
        "model": _artifact(dsl.Model, "model", tmp_path / "model"),
        "embeddings": _artifact(dsl.Artifact, "embeddings", tmp_path / "embeddings"),
        "metrics": _artifact(dsl.Metrics, "metrics", tmp_path / "metrics"),
    }
    with pytest.raises(ValueError, match="unknown HGNN settings \\['epochs'\\]"):
        train_hgnn.python_func(**artifacts, config={"epochs": 3})
