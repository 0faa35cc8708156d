"""Interactions as DataFrames, Arrow tables, Parquet files, folders, globs and gs://."""

from __future__ import annotations

import logging

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


def _write_part(folder, name, frame, columns):
    storage.write_table(
        pa.Table.from_pandas(frame[columns], preserve_index=False),
        storage.join(folder, name),
    )


def test_parquet_timestamp_missing_from_first_file(tmp_path, caplog):
    items = make_items({"movie": ["a", "b", "c"]})
    undated = make_interactions([("u0", "c", None)])
    # u1's a is older than the 30 days before the latest row, day 1096.
    dated = make_interactions(
        [("u1", "a", 0), ("u1", "b", 1096), ("u2", "a", 1096), ("u2", "b", 1096)]
    )
    _write_part(tmp_path, "part-0.parquet", undated, ["user_id", "item_id"])
    _write_part(tmp_path, "part-1.parquet", dated, ["user_id", "item_id", "timestamp"])
    config = GraphConfig(window_days=30, min_count=1, top_k=None)

    with caplog.at_level(logging.WARNING, logger="gfm.graph"):
        result = build_graph(tmp_path, items, None, config)

    stats = result.stats
    assert stats["interactions"]["rows"] == 5
    assert stats["interactions"]["undated"] == 1
    assert stats["window"]["applied"] is True
    assert stats["window"]["latest_timestamp"].startswith("2023-01-01")
    assert stats["interactions_dropped"]["window"] == 1
    assert result.data["movie", "co", "movie"].edge_count.tolist() == [1, 1]
    assert "1 of 2 interactions files lack column 'timestamp'" in caplog.text
    assert "part-0.parquet" in caplog.text


def test_parquet_weight_missing_from_first_file(tmp_path):
    items = make_items({"movie": ["x", "y", "z"]})
    # All undated, so the per-user cap of 2 keeps the two heaviest items.
    light = make_interactions([("u1", "x", None, 1.0)])
    weighted = make_interactions([("u1", "y", None, 3.0), ("u1", "z", None, 0.5)])
    _write_part(tmp_path, "part-0.parquet", light, ["user_id", "item_id"])
    _write_part(tmp_path, "part-1.parquet", weighted, ["user_id", "item_id", "weight"])
    config = GraphConfig(max_items_per_user=2, min_count=1, top_k=None)

    result = build_graph(tmp_path, items, None, config)

    # x weighs 1.0, more than z's 0.5, so the kept pair is x-y.
    assert result.stats["interactions_dropped"]["invalid_weight"] == 0
    assert result.stats["user_items_dropped"]["user_cap"] == 1
    assert result.data["movie", "co", "movie"].edge_index.tolist() == [[0, 1], [1, 0]]


def test_parquet_column_only_in_first_file(tmp_path, caplog):
    items = make_items({"movie": ["a", "b"]})
    frame = make_interactions(
        [("u1", "a", 1, 2.0), ("u1", "b", 2, 2.0), ("u2", "a", 3), ("u2", "b", 4)]
    )
    _write_part(
        tmp_path,
        "part-0.parquet",
        frame.iloc[:2],
        ["user_id", "item_id", "timestamp", "weight"],
    )
    _write_part(tmp_path, "part-1.parquet", frame.iloc[2:], ["user_id", "item_id"])
    config = GraphConfig(min_count=1, top_k=None)

    with caplog.at_level(logging.WARNING, logger="gfm.graph"):
        result = build_graph(str(tmp_path / "part-*.parquet"), items, None, config)

    stats = result.stats
    assert stats["interactions"]["rows"] == 4
    assert stats["interactions"]["undated"] == 2
    assert stats["interactions_dropped"]["invalid_weight"] == 0
    assert result.data["movie", "co", "movie"].edge_count.tolist() == [2, 2]
    assert "lack column 'timestamp'" in caplog.text
    assert "lack column 'weight'" in caplog.text


def test_parquet_file_without_ids(tmp_path):
    items = make_items({"movie": ["a", "b"]})
    frame = make_interactions([("u1", "a", 1), ("u1", "b", 2)])
    _write_part(tmp_path, "part-0.parquet", frame, ["user_id", "item_id"])
    _write_part(tmp_path, "part-1.parquet", frame, ["item_id"])

    with pytest.raises(
        GraphInputError, match=r"1 of 2 interactions files lack column 'user_id'"
    ) as error:
        build_graph(tmp_path, items, None, OPEN)
    assert "part-1.parquet" in str(error.value)


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        (
            "timestamp",
            [1000, 2000],
            "'timestamp' column that is not a timestamp or date",
        ),
        ("weight", ["1", "2"], "'weight' column that is not a number"),
    ],
)
def test_parquet_file_with_wrong_types(tmp_path, column, values, message):
    items = make_items({"movie": ["a", "b"]})
    frame = make_interactions([("u1", "a", 1), ("u1", "b", 2)])
    columns = ["user_id", "item_id", "timestamp", "weight"]
    _write_part(tmp_path, "part-0.parquet", frame, columns)
    _write_part(tmp_path, "part-1.parquet", frame.assign(**{column: values}), columns)

    with pytest.raises(
        GraphInputError, match=f"1 of 2 interactions files have a {message}"
    ) as error:
        build_graph(tmp_path, items, None, OPEN)
    assert "part-1.parquet" in str(error.value)
    assert "part-0.parquet" not in str(error.value)


def test_unreadable_parquet_file(tmp_path):
    items = make_items({"movie": ["a"]})
    (tmp_path / "part-0.parquet").write_bytes(b"not parquet")

    with pytest.raises(GraphInputError, match="is not a readable Parquet file"):
        build_graph(tmp_path, items, None, OPEN)


def test_interactions_with_text_weights():
    items = make_items({"movie": ["a", "b"]})
    frame = make_interactions([("u1", "a", 1), ("u1", "b", 2)])

    with pytest.raises(GraphInputError, match="'weight' has type VARCHAR"):
        build_graph(frame.assign(weight=["x", "1"]), items, None, OPEN)
