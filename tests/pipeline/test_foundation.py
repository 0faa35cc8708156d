"""Tests of gfm.pipelines.foundation and the publish_foundation component."""

import json

import numpy as np
import pytest
from kfp import dsl

from gfm import storage
from gfm.components.foundation import publish_foundation as publish_component
from gfm.embeddings import ItemEmbeddings
from gfm.pipelines.foundation import (
    MANIFEST_FILE,
    foundation_uris,
    publish_foundation,
    read_foundation_manifest,
)


def _embeddings(folder, item_ids, dim, seed):
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(len(item_ids), dim)).astype(np.float32)
    embeddings = ItemEmbeddings(item_ids, ["movie"] * len(item_ids), matrix,
                                metadata={"model": f"seed-{seed}"})
    embeddings.save(str(folder))
    return embeddings


def test_publish_copies_both_layers_and_manifest(tmp_path):
    llm = _embeddings(tmp_path / "llm-run", ["movie:1", "movie:2"], 8, seed=1)
    hgnn = _embeddings(tmp_path / "hgnn-run", ["movie:2", "movie:1"], 4, seed=2)
    target = str(tmp_path / "published")

    manifest = publish_foundation(tmp_path / "llm-run", tmp_path / "hgnn-run", target,
                                  run_name="run-1")

    llm_uri, hgnn_uri = foundation_uris(target)
    assert np.array_equal(ItemEmbeddings.load(llm_uri).matrix, llm.matrix)
    assert np.array_equal(ItemEmbeddings.load(hgnn_uri).matrix, hgnn.matrix)
    assert manifest["run_name"] == "run-1"
    assert manifest["num_items"] == 2
    assert (manifest["llm_dim"], manifest["hgnn_dim"]) == (8, 4)
    assert manifest["llm_metadata"]["model"] == "seed-1"
    assert read_foundation_manifest(target) == manifest


def test_publish_replaces_an_earlier_layer(tmp_path):
    target = str(tmp_path / "published")
    _embeddings(tmp_path / "a-llm", ["movie:1", "movie:2", "movie:3"], 8, seed=1)
    _embeddings(tmp_path / "a-hgnn", ["movie:1", "movie:2", "movie:3"], 4, seed=2)
    publish_foundation(tmp_path / "a-llm", tmp_path / "a-hgnn", target, run_name="a")
    _embeddings(tmp_path / "b-llm", ["movie:1"], 8, seed=3)
    _embeddings(tmp_path / "b-hgnn", ["movie:1"], 4, seed=4)

    publish_foundation(tmp_path / "b-llm", tmp_path / "b-hgnn", target, run_name="b")

    llm_uri, _ = foundation_uris(target)
    assert ItemEmbeddings.load(llm_uri).item_ids == ["movie:1"]
    assert read_foundation_manifest(target)["run_name"] == "b"


def test_publish_rejects_layers_of_different_items(tmp_path):
    _embeddings(tmp_path / "llm", ["movie:1", "movie:2"], 8, seed=1)
    _embeddings(tmp_path / "hgnn", ["movie:1", "movie:3"], 4, seed=2)

    with pytest.raises(ValueError, match=r"cover different items.*movie:2"):
        publish_foundation(tmp_path / "llm", tmp_path / "hgnn", str(tmp_path / "out"),
                           run_name="x")

    assert not (tmp_path / "out").exists()


def test_read_manifest_of_unpublished_location_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="reuse_foundation=false"):
        read_foundation_manifest(str(tmp_path / "nothing"))


def test_publish_to_gcs(tmp_path, gcs_emulator):
    bucket = gcs_emulator.create_bucket("gfm-foundation-test")
    _embeddings(tmp_path / "llm", ["movie:1", "movie:2"], 8, seed=1)
    hgnn = _embeddings(tmp_path / "hgnn", ["movie:1", "movie:2"], 4, seed=2)
    target = storage.join(bucket, "foundation", "movielens-1m")

    publish_foundation(tmp_path / "llm", tmp_path / "hgnn", target, run_name="gcs-run")

    _, hgnn_uri = foundation_uris(target)
    assert hgnn_uri == f"{bucket}/foundation/movielens-1m/hgnn"
    assert np.array_equal(ItemEmbeddings.load(hgnn_uri).matrix, hgnn.matrix)
    assert read_foundation_manifest(target)["run_name"] == "gcs-run"


def test_component_writes_manifest_and_metadata(tmp_path):
    _embeddings(tmp_path / "llm", ["movie:1", "movie:2"], 8, seed=1)
    _embeddings(tmp_path / "hgnn", ["movie:1", "movie:2"], 4, seed=2)
    llm = dsl.Artifact(uri=str(tmp_path / "llm"))
    hgnn = dsl.Artifact(uri=str(tmp_path / "hgnn"))
    published = dsl.Artifact(uri=str(tmp_path / "published-record"))

    publish_component.python_func(
        llm_embeddings=llm, hgnn_embeddings=hgnn,
        target_uri=str(tmp_path / "published"), run_name="component-run",
        published=published,
    )

    record = json.loads((tmp_path / "published-record" / MANIFEST_FILE).read_text())
    assert record["run_name"] == "component-run"
    assert published.metadata["num_items"] == 2
    assert published.metadata["hgnn_dim"] == 4
    assert published.metadata["target_uri"] == str(tmp_path / "published")
