"""The ingest and split KFP components, called through ``python_func``."""

from __future__ import annotations

from pathlib import Path

import pytest
from gfm.components.data import ingest, split
from kfp import dsl

from gfm.data import Dataset
from gfm.data.splits import Split
from gfm.data.synthetic import SyntheticConfig, generate_dataset


def dataset_artifact(path: Path) -> dsl.Dataset:
    return dsl.Dataset(name="dataset", uri=str(path), metadata={})


def test_ingest_real_dataset(tmp_path: Path, data_dir: Path, monkeypatch):
    monkeypatch.setenv("GFM_DATA_DIR", str(data_dir))
    output = dataset_artifact(tmp_path / "dataset")

    ingest.python_func(dataset_name="lastfm-2k", files_uri="", strict=False,
                       dataset=output)

    loaded = Dataset.load(output.path)
    assert loaded.name == "lastfm-2k"
    assert output.metadata["items"] == 17_632 + 11_946
    assert output.metadata["interactions"] == 92_834 + 186_474
    assert output.metadata["dropped_rows"] == 5
    assert output.metadata["item_types"] == ["artist", "tag"]
    assert output.metadata["users"] == 0


def test_ingest_files_with_options(tmp_path: Path):
    source = generate_dataset(SyntheticConfig(num_users=50, num_interactions=2_000,
                                              items_per_type={"book": 30}))
    source.save(tmp_path / "tables")
    output = dataset_artifact(tmp_path / "dataset")

    ingest.python_func(dataset_name="files", files_uri=str(tmp_path / "tables"),
                       strict=True, dataset=output, config={"dataset_name": "books"})

    assert Dataset.load(output.path).name == "books"
    assert output.metadata["interactions"] == 2_000
    assert output.metadata["users"] == 50


def test_ingest_rejects_stray_files_uri(tmp_path: Path):
    with pytest.raises(ValueError, match="only read by the 'files' dataset"):
        ingest.python_func(dataset_name="lastfm-2k", files_uri="gs://b/x", strict=False,
                           dataset=dataset_artifact(tmp_path / "d"))


def test_split_writes_parts_and_metrics(tmp_path: Path):
    generate_dataset(SyntheticConfig(num_users=100, num_interactions=5_000)).save(
        tmp_path / "dataset")
    parts = dsl.Dataset(name="split", uri=str(tmp_path / "split"), metadata={})
    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={})

    split.python_func(dataset=dataset_artifact(tmp_path / "dataset"),
                      config={"protocol": "random", "cold_item_fraction": 0.1},
                      split=parts, metrics=metrics)

    loaded = Split.load(parts.path)
    expected_cold = round(0.1 * loaded.report["cold_items"]["candidates"])
    assert len(loaded.train) + len(loaded.valid) + len(loaded.test) + sum(
        loaded.report["dropped"].values()) == 5_000
    assert parts.metadata["test"] == len(loaded.test)
    assert parts.metadata["protocols"] == {"interaction": "random"}
    assert expected_cold > 0
    assert parts.metadata["cold_items"] == expected_cold
    assert metrics.metadata["test_interactions"] == len(loaded.test)
    assert metrics.metadata["train_users"] == loaded.train["user_id"].nunique()
    assert metrics.metadata["cold_items"] == expected_cold
    assert metrics.metadata["dropped_cold_item_train"] > 0


def test_split_rejects_unknown_setting(tmp_path: Path):
    generate_dataset(SyntheticConfig(num_users=20, num_interactions=500)).save(
        tmp_path / "dataset")
    with pytest.raises(ValueError, match=r"unknown split settings \['folds'\]"):
        split.python_func(dataset=dataset_artifact(tmp_path / "dataset"),
                          config={"folds": 5},
                          split=dataset_artifact(tmp_path / "split"),
                          metrics=dsl.Metrics(name="m", uri=str(tmp_path / "m"),
                                              metadata={}))
