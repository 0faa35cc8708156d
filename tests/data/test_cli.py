"""Tests of ``gfm data ingest``, ``split`` and ``synth`` through gfm.cli.main."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gfm import cli
from gfm.cli import main
from gfm.data import Dataset
from gfm.data.splits import Split


def test_synth_split_round_trip(tmp_path: Path, capsys):
    config = tmp_path / "synth.yaml"
    config.write_text("synthetic:\n  num_users: 80\n  num_clusters: 3\n")
    code = main(["data", "synth", "--config", str(config), "--num-interactions", "3000",
                 "--items-per-type", "movie=40,show=10", "--seed", "4",
                 "--chunk-rows", "1000", "--out", str(tmp_path / "synth")])
    printed = json.loads(capsys.readouterr().out)

    assert code == 0
    assert printed["generation"]["interactions"] == 3_000
    dataset = Dataset.load(tmp_path / "synth")
    assert dataset.item_types == ["movie", "show"]
    assert len(dataset.users) == 80

    split_config = tmp_path / "split.json"
    split_config.write_text(json.dumps({"protocol": "leave_last_n", "n_test": 2}))
    code = main(["data", "split", "--dataset-uri", str(tmp_path / "synth"),
                 "--config", str(split_config), "--out", str(tmp_path / "split")])
    printed = json.loads(capsys.readouterr().out)

    assert code == 0
    assert printed["protocols"] == {"interaction": "leave_last_n"}
    split = Split.load(tmp_path / "split")
    assert split.test.groupby("user_id").size().eq(2).all()


def test_ingest_with_option(tmp_path: Path, data_dir: Path, capsys):
    code = main(["data", "ingest", "--dataset", "lastfm-2k", "--data-dir", str(data_dir),
                 "--option", "tag_min_date=1950-01-01", "--out", str(tmp_path / "ds")])
    printed = json.loads(capsys.readouterr().out)

    assert code == 0
    assert printed["dropped"]["interactions"]["tag_date_out_of_range"] == 0
    assert printed["rows_out"]["interactions"] == 92_834 + 186_479
    assert Dataset.load(tmp_path / "ds").name == "lastfm-2k"


@pytest.fixture
def gfm_records(monkeypatch, caplog) -> pytest.LogCaptureFixture:
    """Let caplog see gfm's records, which configure_logging stops at "gfm"."""
    monkeypatch.setattr(cli, "configure_logging", lambda level=None: None)
    monkeypatch.setattr(logging.getLogger("gfm"), "propagate", True)
    return caplog


def test_invalid_inputs_exit_2(tmp_path: Path, gfm_records):
    caplog = gfm_records
    assert main(["data", "ingest", "--dataset", "imdb", "--out", str(tmp_path)]) == 2
    assert "unknown dataset 'imdb'" in caplog.text
    assert main(["data", "ingest", "--dataset", "files", "--option", "novalue",
                 "--out", str(tmp_path)]) == 2
    assert "invalid --option 'novalue'" in caplog.text
    assert main(["data", "synth", "--items-per-type", "movie=many",
                 "--out", str(tmp_path)]) == 2
    assert "invalid --items-per-type entry 'movie=many'" in caplog.text
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    assert main(["data", "split", "--dataset-uri", str(tmp_path), "--config", str(bad),
                 "--out", str(tmp_path / "s")]) == 2
    assert "must hold a mapping of settings" in caplog.text
