"""``gfm graph build`` and ``gfm graph stats``."""

from __future__ import annotations

import json

import pyarrow as pa

from gfm import storage
from gfm.cli import main
from gfm.graph import load_graph

from .conftest import make_features


def _write_inputs(tables, folder):
    interactions, items = tables
    storage.write_table(
        pa.Table.from_pandas(items, preserve_index=False),
        folder / "dataset" / "items.parquet",
    )
    storage.write_table(
        pa.Table.from_pandas(interactions, preserve_index=False),
        folder / "train.parquet",
    )
    make_features(items).save(folder / "llm")


def test_cli_build_and_stats(random_tables, tmp_path, capsys):
    _write_inputs(random_tables, tmp_path)

    code = main(
        [
            "graph",
            "build",
            "--items",
            str(tmp_path / "dataset"),
            "--interactions",
            str(tmp_path / "train.parquet"),
            "--embeddings",
            str(tmp_path / "llm"),
            "--config",
            '{"window_days": null, "min_count": 1}',
            "--out",
            str(tmp_path / "graph"),
        ]
    )
    summary = json.loads(capsys.readouterr().out)

    assert code == 0
    assert summary["nodes"] == {"album": 10, "show": 8, "tag": 6}
    result = load_graph(tmp_path / "graph")
    assert result.data["tag"].x.shape == (6, 4)
    assert result.stats["config"]["min_count"] == 1

    assert main(["graph", "stats", str(tmp_path / "graph")]) == 0
    assert json.loads(capsys.readouterr().out) == result.stats


def test_cli_build_yaml_config_file(random_tables, tmp_path, capsys):
    _write_inputs(random_tables, tmp_path)
    (tmp_path / "graph.yaml").write_text("window_days: null\ntop_k: 3\n")

    code = main(
        [
            "graph",
            "build",
            "--items",
            str(tmp_path / "dataset" / "items.parquet"),
            "--interactions",
            str(tmp_path / "train.parquet"),
            "--config",
            f"@{tmp_path / 'graph.yaml'}",
            "--out",
            str(tmp_path / "graph"),
        ]
    )

    assert code == 0
    result = load_graph(tmp_path / "graph")
    assert result.stats["config"]["top_k"] == 3
    assert "x" not in result.data["album"]


def test_cli_build_rejects_bad_config(random_tables, tmp_path, capsys):
    _write_inputs(random_tables, tmp_path)

    code = main(
        [
            "graph",
            "build",
            "--items",
            str(tmp_path / "dataset"),
            "--interactions",
            str(tmp_path / "train.parquet"),
            "--config",
            '{"topk": 3}',
            "--out",
            str(tmp_path / "graph"),
        ]
    )

    assert code == 2
    assert "unknown graph setting(s) ['topk']" in capsys.readouterr().err
    assert not (tmp_path / "graph").exists()
