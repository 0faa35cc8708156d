"""Tests of the ``gfm twotower`` subcommands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gfm.cli import main
from gfm.twotower import ProductModel


@pytest.fixture
def folders(ml1m_dataset, ml1m: dict, tmp_path: Path) -> dict[str, str]:
    ml1m_dataset.save(tmp_path / "dataset")
    ml1m["split"].save(tmp_path / "split")
    ml1m["llm"].save(tmp_path / "llm")
    ml1m["hgnn"].save(tmp_path / "hgnn")
    return {name: str(tmp_path / name) for name in ("dataset", "split", "llm", "hgnn")}


def _inputs(folders: dict[str, str]) -> list[str]:
    return ["--dataset", folders["dataset"], "--split", folders["split"],
            "--llm", folders["llm"], "--hgnn", folders["hgnn"]]


def test_cli_train_export_check(folders, tmp_path: Path, capsys):
    settings = tmp_path / "run.yaml"
    settings.write_text("twotower:\n  products:\n    movies: [movie]\n  max_epochs: 3\n")
    config = json.dumps({"max_epochs": 1, "tower_dims": [16], "num_threads": 1})

    trained = main(["twotower", "train", *_inputs(folders), "--product", "movies",
                    "--settings", str(settings), "--config", config,
                    "--out", str(tmp_path / "model")])
    summary = json.loads(capsys.readouterr().out)
    exported = main(["twotower", "export", "--model", str(tmp_path / "model"),
                     *_inputs(folders), "--model-version", "cli-1",
                     "--out", str(tmp_path / "bundle")])
    capsys.readouterr()
    checked = main(["twotower", "check", str(tmp_path / "bundle")])
    report = json.loads(capsys.readouterr().out)

    assert (trained, exported, checked) == (0, 0, 0)
    assert summary["product"] == "movies"
    assert summary["counts"]["items"] == 3883
    assert ProductModel.load(tmp_path / "model").config.max_epochs == 1
    assert report["model_version"] == "cli-1"
    assert report["products"]["movies"]["dim"] == 16
    assert report["embeddings"] == {"hgnn": 32, "llm": 48}


def test_cli_train_rejects_unknown_setting(folders, tmp_path: Path, capsys):
    code = main(["twotower", "train", *_inputs(folders), "--product", "movies",
                 "--item-types", "movie", "--config", '{"epochs": 2}',
                 "--out", str(tmp_path / "model")])

    assert code == 2
    assert "unknown two-tower setting(s) ['epochs']" in capsys.readouterr().err


def test_cli_train_needs_item_types(folders, tmp_path: Path, capsys):
    code = main(["twotower", "train", *_inputs(folders), "--product", "movies",
                 "--out", str(tmp_path / "model")])

    assert code == 2
    assert "no item types for product 'movies'" in capsys.readouterr().err


def test_cli_check_reports_broken_bundle(tmp_path: Path, capsys):
    code = main(["twotower", "check", str(tmp_path / "nothing")])

    assert code == 1
    assert "bundle.json is missing" in capsys.readouterr().err
