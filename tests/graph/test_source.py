"""Interactions as DataFrames, Arrow tables, Parquet files, folders, globs and gs://."""

from __future__ import annotations

import pyarrow as pa
import pytest

from gfm import storage
from gfm.graph import GraphConfig, GraphInputError, build_graph

from .conftest import make_interactions, make_items

OPEN = GraphConfig(window_days=None, min_count=1, top_k=None)


def _edge_sets(data):
    return {
        edge_type: sorted(map(tuple, data[edge_type].edge_index.t().tolist()))
        for edge_type in data.edge_types
    }


def _write_parts(interactions, folder, parts: int = 3) -> None:
    size = -(-len(interactions) // parts)
    for part in range(parts):
        chunk = interactions.iloc[part * size : (part + 1) * size]
        storage.write_table(
            pa.Table.from_pandas(chunk, preserve_index=False),
            storage.join(folder, f"part-{part}.parquet"),
        )


def test_local_inputs_give_one_graph(random_tables, tmp_path):
    interactions, items = random_tables
    expected = _edge_sets(build_graph(interactions, items, None, OPEN).data)
    single = tmp_path / "train.parquet"
    storage.write_table(
        pa.Table.from_pandas(interactions, preserve_index=False), single
    )
    _write_parts(interactions, tmp_path / "parts")

    inputs = [
        pa.Table.from_pandas(interactions, preserve_index=False),
        str(single),
        tmp_path / "parts",
        str(tmp_path / "parts" / "part-*.parquet"),
    ]
    for source in inputs:
        result = build_graph(source, items, None, OPEN)
        assert _edge_sets(result.data) == expected, source
        assert result.stats["interactions"]["rows"] == len(interactions)


def test_gcs_inputs_give_one_graph(random_tables, gcs_emulator):
    interactions, items = random_tables
    expected = _edge_sets(build_graph(interactions, items, None, OPEN).data)
    bucket = gcs_emulator.create_bucket("graph-source")
    _write_parts(interactions, f"{bucket}/train")
    storage.write_text(f"{bucket}/train/_SUCCESS", "")

    for uri in (
        f"{bucket}/train",
        f"{bucket}/train/part-*.parquet",
        f"{bucket}/train/part-1.parquet",
    ):
        result = build_graph(uri, items, None, OPEN)
        if uri.endswith("part-1.parquet"):
            assert result.stats["interactions"]["rows"] == -(-len(interactions) // 3)
        else:
            assert _edge_sets(result.data) == expected
            assert result.stats["interactions"]["rows"] == len(interactions)


def test_missing_parquet_path(random_tables, tmp_path):
    _, items = random_tables
    with pytest.raises(FileNotFoundError, match="no Parquet file matches"):
        build_graph(str(tmp_path / "nothing-*.parquet"), items, None, OPEN)
    with pytest.raises(FileNotFoundError, match="no Parquet file matches"):
        build_graph(tmp_path / "missing.parquet", items, None, OPEN)


def test_unsupported_interactions_type(random_tables):
    _, items = random_tables
    with pytest.raises(ValueError, match="are not supported"):
        build_graph([("u1", "album:1")], items, None, OPEN)


def test_interactions_without_timestamp_or_weight(random_tables):
    interactions, items = random_tables
    bare = interactions[["user_id", "item_id"]]
    result = build_graph(bare, items, None, GraphConfig(min_count=1, top_k=None))

    assert result.stats["interactions"]["undated"] == len(bare)
    assert result.stats["window"]["applied"] is False
    assert result.stats["co_occurrences_dropped"]["window"] == 0


def test_interactions_with_text_weights():
    items = make_items({"movie": ["a", "b"]})
    frame = make_interactions([("u1", "a", 1), ("u1", "b", 2)])

    with pytest.raises(GraphInputError, match="'weight' has type VARCHAR"):
        build_graph(frame.assign(weight=["x", "1"]), items, None, OPEN)
