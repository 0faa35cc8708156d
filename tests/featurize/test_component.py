"""Tests of the featurize KFP component and the ``gfm featurize`` command."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from kfp import dsl

from gfm import storage
from gfm.cli import main
from gfm.components.featurize import featurize
from gfm.data.schema import ITEMS_SCHEMA
from gfm.embeddings import ItemEmbeddings

CONFIG = {"engine": "sentence-transformers", "device": "cpu", "batch_size": 4}


@pytest.fixture
def dataset_dir(small_items, tmp_path):
    folder = tmp_path / "dataset"
    table = pa.Table.from_pandas(small_items, schema=ITEMS_SCHEMA, preserve_index=False)
    storage.write_table(table, str(folder / "items.parquet"))
    return folder


def test_featurize_component_writes_embeddings(dataset_dir, small_items, tmp_path):
    dataset = dsl.Dataset(name="dataset", uri=str(dataset_dir), metadata={})
    embeddings = dsl.Artifact(name="embeddings", uri=str(tmp_path / "embeddings"),
                              metadata={})

    featurize.python_func(dataset=dataset, embeddings=embeddings, config=CONFIG)
    loaded = ItemEmbeddings.load(embeddings.path)

    assert loaded.item_ids == small_items["item_id"].tolist()
    assert loaded.matrix.shape == (6, 384)
    assert embeddings.metadata["num_items"] == 6
    assert embeddings.metadata["dim"] == 384
    assert embeddings.metadata["embedded"] == 6
    assert embeddings.metadata["reused"] == 0
    assert embeddings.metadata["engine"] == "sentence-transformers"
    assert embeddings.metadata["items_per_type"] == {"movie": 3, "artist": 2, "tag": 1}


def test_featurize_component_rejects_unknown_setting(dataset_dir, tmp_path):
    dataset = dsl.Dataset(name="dataset", uri=str(dataset_dir), metadata={})
    embeddings = dsl.Artifact(name="embeddings", uri=str(tmp_path / "out"), metadata={})

    with pytest.raises(ValueError, match=r"unknown featurize setting\(s\) \['modle'\]"):
        featurize.python_func(dataset=dataset, embeddings=embeddings,
                              config={"modle": "x"})


def test_cli_featurize_with_settings_file(dataset_dir, tmp_path, capsys):
    settings_file = tmp_path / "run.yaml"
    settings_file.write_text("featurize:\n  engine: sentence-transformers\n"
                             "  device: cpu\n  template_version: v2\n")
    output = tmp_path / "cli-embeddings"

    code = main(["featurize", str(dataset_dir), str(output), "--config", str(settings_file),
                 "--batch-size", "2", "--cache-uri", str(tmp_path / "cache")])
    summary = json.loads(capsys.readouterr().out)
    loaded = ItemEmbeddings.load(str(output))

    assert code == 0
    assert summary["num_items"] == 6
    assert summary["embedded"] == 6
    assert loaded.metadata["template_version"] == "v2"
    assert loaded.metadata["batch_size"] == 2
    assert storage.list_files(str(tmp_path / "cache"))


def test_cli_featurize_invalid_settings_exit_code(dataset_dir, tmp_path):
    settings_file = tmp_path / "bad.yaml"
    settings_file.write_text("featurize:\n  engine: onnx\n")

    code = main(["featurize", str(dataset_dir), str(tmp_path / "out"),
                 "--config", str(settings_file)])

    assert code == 2
    assert not (tmp_path / "out").exists()
