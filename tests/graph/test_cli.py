"""``gfm graph build`` and ``gfm graph stats``."""

from __future__ import annotations

import json

import pyarrow as pa

from gfm import storage
from gfm.cli import main
from gfm.graph import load_graph

from .conftest import make_features, make_interactions, make_items


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


def _build_args(folder, config='{"window_days": null}'):
    return [
        "graph",
        "build",
        "--items",
        str(folder / "dataset"),
        "--interactions",
        str(folder / "train.parquet"),
        "--config",
        config,
        "--out",
        str(folder / "graph"),
    ]


def _build_error(folder, capsys, **options):
    """Run ``gfm graph build``, expect exit code 2 and return its error line."""
    code = main(_build_args(folder, **options))
    err = capsys.readouterr().err

    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("gfm graph build:")]
    assert len(lines) == 1, err
    assert not (folder / "graph").exists()
    return lines[0]


def test_cli_build_empty_graph_exits_2(tmp_path, capsys):
    interactions = make_interactions([("u1", "a", 1), ("u1", "zz", 2)])
    _write_inputs((interactions, make_items({"movie": ["a", "b"]})), tmp_path)

    assert _build_error(tmp_path, capsys) == (
        "gfm graph build: the graph is empty: the rules left no user with two "
        "items that pair up. Co-occurrences dropped by rule: {'unknown_item': 1}. "
        "To keep pairs, make the interactions name catalog items"
    )


def test_cli_build_invalid_interactions_exits_2(tmp_path, capsys):
    interactions = make_interactions([("u1", "a", 1), ("u1", "b", 2)])
    interactions["timestamp"] = [1000, 2000]
    _write_inputs((interactions, make_items({"movie": ["a", "b"]})), tmp_path)

    line = _build_error(tmp_path, capsys)
    assert "column 'timestamp' has type BIGINT; expected a timestamp" in line


def test_cli_build_missing_interactions_exits_2(tmp_path, capsys):
    _write_inputs((make_interactions([]), make_items({"movie": ["a"]})), tmp_path)
    (tmp_path / "train.parquet").unlink()

    line = _build_error(tmp_path, capsys)
    assert "no Parquet file matches the interactions path" in line


def test_cli_build_missing_config_file_exits_2(random_tables, tmp_path, capsys):
    _write_inputs(random_tables, tmp_path)

    line = _build_error(tmp_path, capsys, config=f"@{tmp_path / 'missing.yaml'}")
    assert line.startswith("gfm graph build: invalid --config: ")
    assert "missing.yaml" in line
