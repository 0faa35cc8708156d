"""The build_graph KFP component, called through ``python_func``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from kfp import dsl

from gfm import storage
from gfm.components import encode_parameter
from gfm.components.graph import build_graph
from gfm.data.synthetic import SyntheticConfig, generate_dataset
from gfm.graph import load_graph

from .conftest import make_features


@pytest.fixture
def artifacts(tmp_path: Path) -> dict[str, dsl.Artifact]:
    dataset = generate_dataset(
        SyntheticConfig(
            num_users=120,
            num_interactions=4_000,
            items_per_type={"movie": 60, "podcast": 25},
        )
    )
    dataset.save(tmp_path / "dataset")
    storage.write_table(
        pa.Table.from_pandas(dataset.interactions, preserve_index=False),
        tmp_path / "split" / "train.parquet",
    )
    make_features(dataset.items, dim=8).save(tmp_path / "llm")
    return {
        "dataset": dsl.Dataset(
            name="dataset", uri=str(tmp_path / "dataset"), metadata={}
        ),
        "split": dsl.Dataset(name="split", uri=str(tmp_path / "split"), metadata={}),
        "llm_embeddings": dsl.Artifact(
            name="llm", uri=str(tmp_path / "llm"), metadata={}
        ),
        "graph": dsl.Artifact(name="graph", uri=str(tmp_path / "graph"), metadata={}),
        "metrics": dsl.Metrics(
            name="metrics", uri=str(tmp_path / "metrics"), metadata={}
        ),
    }


def test_component_writes_graph_and_metrics(artifacts):
    build_graph.python_func(**artifacts, config={"window_days": None, "top_k": 20})

    result = load_graph(artifacts["graph"].path)
    assert result.data["movie"].x.shape == (60, 8)
    assert result.data["podcast"].num_nodes == 25
    assert result.stats["config"]["top_k"] == 20
    metadata = artifacts["graph"].metadata
    assert metadata["nodes_movie"] == 60
    assert metadata["node_types"] == ["movie", "podcast"]
    assert metadata["relations"] == result.stats["relations"]
    assert (
        metadata["edges_movie__co__podcast"]
        == result.stats["edges"]["movie__co__podcast"]
    )
    metrics = artifacts["metrics"].metadata
    assert metrics["nodes_podcast"] == 25
    assert metrics["isolated_movie"] == result.stats["isolated_nodes"]["movie"]
    assert (
        metrics["item_pairs_dropped_support"]
        == result.stats["item_pairs_dropped"]["support"]
    )
    assert metrics["co_occurrences_dropped_window"] == 0


def test_component_empty_config_uses_defaults(artifacts):
    build_graph.python_func(**artifacts, config={})

    stats = load_graph(artifacts["graph"].path).stats
    assert stats["config"]["window_days"] == 90.0
    assert stats["window"]["applied"] is True


def test_component_decodes_null_settings(artifacts):
    config = encode_parameter({"window_days": None, "top_k": None, "min_count": 1})
    build_graph.python_func(**artifacts, config=config)

    stats = load_graph(artifacts["graph"].path).stats
    assert stats["config"]["window_days"] is None
    assert stats["config"]["top_k"] is None
    assert stats["window"]["applied"] is False
    assert stats["item_pairs_dropped"]["top_k"] == 0


def test_component_rejects_unknown_setting(artifacts):
    with pytest.raises(ValueError, match="unknown graph setting"):
        build_graph.python_func(**artifacts, config={"windows": 3})
