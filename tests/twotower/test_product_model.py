"""Tests of ProductModel: scoring, save and load on local folders and GCS."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from gfm import storage
from gfm.embeddings import ItemEmbeddings
from gfm.twotower import ProductModel


def _histories(ml1m: dict) -> list[list[str]]:
    train = ml1m["train"]
    return [train.loc[train["user_id"] == u, "item_id"].tolist() for u in ("1", "5", "42")]


def test_save_load_same_scores(trained, ml1m, tmp_path: Path):
    histories = _histories(ml1m)
    features = [{"gender": "F", "age": "1", "occupation": "10"}, None, {"gender": "M"}]

    trained.save(tmp_path / "model")
    loaded = ProductModel.load(tmp_path / "model")

    np.testing.assert_array_equal(loaded.item_vectors(), trained.item_vectors())
    np.testing.assert_allclose(loaded.scores(histories, features),
                               trained.scores(histories, features), atol=1e-6)
    assert loaded.item_ids == trained.item_ids
    assert loaded.config == trained.config
    assert loaded.metrics["best_valid_recall"] == trained.metrics["best_valid_recall"]
    np.testing.assert_array_equal(loaded.popularity, trained.popularity)


def test_save_writes_documented_files(trained, tmp_path: Path):
    trained.save(tmp_path / "model")

    names = {Path(p).relative_to(tmp_path / "model").as_posix()
             for p in storage.list_files(tmp_path / "model")}

    assert {"config.json", "user_tower.pt", "item_vectors.npy", "items.parquet",
            "metrics.json", "history/embeddings.npy"} <= names
    items = storage.read_table(tmp_path / "model" / "items.parquet")
    assert items.column_names == ["item_id", "item_type", "popularity"]


def test_save_load_through_gcs(trained, ml1m, gcs_emulator):
    bucket = gcs_emulator.create_bucket(f"twotower-{uuid.uuid4().hex[:8]}")
    uri = f"{bucket}/models/movies"

    trained.save(uri)
    loaded = ProductModel.load(uri)

    histories = _histories(ml1m)
    np.testing.assert_allclose(loaded.user_vectors(histories),
                               trained.user_vectors(histories), atol=1e-6)


def test_load_without_history_needs_embeddings(trained, ml1m, tmp_path: Path):
    trained.save(tmp_path / "model", include_history=False)

    with pytest.raises(FileNotFoundError, match="pass the hgnn embeddings as history="):
        ProductModel.load(tmp_path / "model")
    loaded = ProductModel.load(tmp_path / "model", history=ml1m["hgnn"])
    histories = _histories(ml1m)
    np.testing.assert_allclose(loaded.user_vectors(histories),
                               trained.user_vectors(histories), atol=1e-6)


def test_load_rejects_history_of_other_dim(trained, ml1m, tmp_path: Path):
    trained.save(tmp_path / "model", include_history=False)

    with pytest.raises(ValueError, match="history embeddings have dim 48"):
        ProductModel.load(tmp_path / "model", history=ml1m["llm"])


def test_load_rejects_other_format_version(trained, tmp_path: Path):
    trained.save(tmp_path / "model")
    config = storage.read_json(tmp_path / "model" / "config.json")
    config["format_version"] = 99
    storage.write_json(tmp_path / "model" / "config.json", config)

    with pytest.raises(ValueError, match="format_version 99"):
        ProductModel.load(tmp_path / "model")


def test_load_rejects_truncated_item_vectors(trained, tmp_path: Path):
    trained.save(tmp_path / "model")
    storage.write_array(tmp_path / "model" / "item_vectors.npy", trained.item_vectors()[:-1])

    with pytest.raises(ValueError, match=r"expected \(3883, 32\)"):
        ProductModel.load(tmp_path / "model")


def test_user_vectors_rejects_misaligned_features(trained):
    with pytest.raises(ValueError, match="2 histories but 1 user feature"):
        trained.user_vectors([["movie:1"], ["movie:2"]], [None])


def test_user_vectors_many_users_in_batches(trained, ml1m):
    histories = _histories(ml1m) * 1500

    vectors = trained.user_vectors(histories)

    assert vectors.shape == (4500, 32)
    np.testing.assert_allclose(vectors[4497:], vectors[:3], atol=1e-6)


def test_history_embeddings_round_trip_metadata(trained, tmp_path: Path):
    trained.save(tmp_path / "model")

    history = ItemEmbeddings.load(tmp_path / "model" / "history")

    assert history.item_ids == trained.encoder.history.item_ids
    assert history.metadata["model"] == "svd-stand-in"
