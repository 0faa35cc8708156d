"""Tests of the featurize KFP component and the ``gfm featurize`` command."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from kfp import dsl

from gfm import cli as gfm_cli
from gfm import storage
from gfm.cli import build_parser, main
from gfm.components.featurize import featurize
from gfm.data import Dataset
from gfm.data.item_text import items_for_split
from gfm.data.schema import ITEMS_SCHEMA
from gfm.data.splits import Split, split_dataset
from gfm.data.validate import validate_dataset
from gfm.embeddings import ItemEmbeddings
from gfm.featurize import FeaturizeConfig, featurize_items
from gfm.featurize.cli import build_config

CONFIG = {"engine": "sentence-transformers", "device": "cpu", "batch_size": 4}


@pytest.fixture
def dataset_dir(small_items, tmp_path):
    folder = tmp_path / "dataset"
    table = pa.Table.from_pandas(small_items, schema=ITEMS_SCHEMA, preserve_index=False)
    storage.write_table(table, str(folder / "items.parquet"))
    return folder


@pytest.fixture
def tagged_dataset(small_items, tmp_path):
    """Dataset and split folders where users tagged Miles Davis (artist:2)
    post-rock in January, before the cutoffs, and only in May, the test period."""
    rows = [("u1", "tag:1", "2011-01-01", "artist:2"), ("u2", "tag:1", "2011-05-01", "artist:2"),
            ("u3", "tag:1", "2011-03-01", "artist:1")]
    applications = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp",
                                               "tagged_item_id"])
    applications["timestamp"] = pd.to_datetime(applications["timestamp"], utc=True)
    interactions = applications.drop(columns=["tagged_item_id"]).assign(
        weight=1.0, event_type="tag")
    items, interactions, _, report = validate_dataset(small_items, interactions)
    dataset = Dataset(name="tagged", items=items, interactions=interactions, report=report,
                      tag_applications=applications)
    split = split_dataset(dataset, {"protocol": "temporal", "test_days": 30,
                                    "valid_days": 70, "window_days": None})
    dataset.save(tmp_path / "tagged")
    split.save(tmp_path / "tagged-split")
    return tmp_path / "tagged", tmp_path / "tagged-split"


def _split_artifact(folder):
    return dsl.Dataset(name="split", uri=str(folder), metadata={})


def test_featurize_component_writes_embeddings(tagged_dataset, small_items, tmp_path):
    dataset_folder, split_folder = tagged_dataset
    dataset = dsl.Dataset(name="dataset", uri=str(dataset_folder), metadata={})
    embeddings = dsl.Artifact(name="embeddings", uri=str(tmp_path / "embeddings"),
                              metadata={})

    featurize.python_func(dataset=dataset, split=_split_artifact(split_folder),
                          embeddings=embeddings, config=CONFIG)
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
    assert loaded.metadata["item_text"]["used"] == 1
    assert loaded.metadata["item_text"]["in_valid_or_test"] == 2


def test_featurize_component_tag_text_from_train(tagged_dataset, small_items, tmp_path):
    # Miles Davis's tag text becomes the January post-rock application alone,
    # and Radiohead, tagged only in the validation period, loses its tags.
    dataset_folder, split_folder = tagged_dataset
    dataset = Dataset.load(dataset_folder)
    items, _ = items_for_split(dataset, Split.load(split_folder))
    by_id = items.set_index("item_id")["tags"]
    config = FeaturizeConfig.from_dict(CONFIG)
    embeddings = dsl.Artifact(name="embeddings", uri=str(tmp_path / "embeddings"),
                              metadata={})

    featurize.python_func(
        dataset=dsl.Dataset(name="dataset", uri=str(dataset_folder), metadata={}),
        split=_split_artifact(split_folder), embeddings=embeddings, config=CONFIG)
    loaded = ItemEmbeddings.load(embeddings.path)
    expected = featurize_items(items, config)

    assert by_id["artist:2"] == ["post-rock"]
    assert by_id["artist:1"] is None
    np.testing.assert_allclose(loaded.matrix, expected.matrix, atol=1e-5)


def test_featurize_component_rejects_unknown_setting(dataset_dir, tmp_path):
    dataset = dsl.Dataset(name="dataset", uri=str(dataset_dir), metadata={})
    embeddings = dsl.Artifact(name="embeddings", uri=str(tmp_path / "out"), metadata={})

    with pytest.raises(ValueError, match=r"unknown featurize setting\(s\) \['modle'\]"):
        featurize.python_func(dataset=dataset, split=_split_artifact(tmp_path / "none"),
                              embeddings=embeddings, config={"modle": "x"})


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


def test_cli_featurize_with_split(tagged_dataset, tmp_path, capsys):
    dataset_folder, split_folder = tagged_dataset
    output = tmp_path / "cli-split-embeddings"

    code = main(["featurize", str(dataset_folder), str(output), "--split", str(split_folder),
                 "--engine", "sentence-transformers"])
    capsys.readouterr()
    loaded = ItemEmbeddings.load(str(output))

    assert code == 0
    assert loaded.metadata["item_text"]["used"] == 1
