"""Tests of the featurize KFP component and the ``gfm featurize`` command."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pytest
from kfp import dsl

from gfm import cli as gfm_cli
from gfm import storage
from gfm.cli import build_parser, main
from gfm.components.featurize import featurize
from gfm.data.schema import ITEMS_SCHEMA
from gfm.embeddings import ItemEmbeddings
from gfm.featurize.cli import build_config

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
    assert embeddings.metadata["cache_invalid"] == 0
    assert embeddings.metadata["cache_skipped_shards"] == 0
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


@pytest.fixture
def gfm_records(monkeypatch, caplog) -> pytest.LogCaptureFixture:
    """Let caplog see gfm's records, which configure_logging stops at "gfm"."""
    monkeypatch.setattr(gfm_cli, "configure_logging", lambda level=None: None)
    monkeypatch.setattr(logging.getLogger("gfm"), "propagate", True)
    return caplog


@pytest.mark.parametrize(("case", "message"), [
    ("empty", "featurize failed: items table is empty"),
    ("missing", "featurize failed: no such Parquet file"),
    ("podcast", "featurize failed: no template for item type 'podcast'"),
])
def test_cli_featurize_bad_input_exit_code(small_items, tmp_path, gfm_records, case,
                                           message):
    folder = tmp_path / case
    items = small_items.iloc[:0] if case == "empty" else small_items.copy()
    if case == "podcast":
        items.loc[0, "item_type"] = "podcast"
    if case != "missing":
        table = pa.Table.from_pandas(items, schema=ITEMS_SCHEMA, preserve_index=False)
        storage.write_table(table, str(folder / "items.parquet"))

    code = main(["featurize", str(folder), str(tmp_path / "out"),
                 "--engine", "sentence-transformers"])

    assert code == 2
    assert message in gfm_records.text
    assert not (tmp_path / "out").exists()


def test_cli_featurize_num_actors_needs_ray(dataset_dir, tmp_path, gfm_records):
    code = main(["featurize", str(dataset_dir), str(tmp_path / "out"), "--num-actors", "4"])

    assert code == 2
    assert "--num-actors 4 sizes the Ray actor pool, but Ray is off" in gfm_records.text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("document", "message"), [
    ("featurize:\n  ray: 5\n", "featurize.ray must be a mapping of Ray settings or "
                               "true/false, got 5"),
    ("- a\n", "must contain a mapping"),
    ("featurize: [\n", "invalid featurize settings: while parsing"),
])
def test_cli_featurize_bad_settings_file(dataset_dir, tmp_path, gfm_records, document,
                                         message):
    settings_file = tmp_path / "run.yaml"
    settings_file.write_text(document)

    code = main(["featurize", str(dataset_dir), str(tmp_path / "out"),
                 "--config", str(settings_file)])

    assert code == 2
    assert message in gfm_records.text


def test_cli_num_actors_with_ray_in_file(tmp_path):
    settings_file = tmp_path / "run.yaml"
    settings_file.write_text("featurize:\n  ray: true\n")
    args = build_parser().parse_args(["featurize", "d", "o", "--config", str(settings_file),
                                      "--num-actors", "3"])

    config = build_config(args)

    assert config.ray.enabled is True
    assert config.ray.num_actors == 3
