"""Loading bundles: a corrupted bundle leaves the model unready with a clear log."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from gfm.serving.config import ServingConfig
from gfm.serving.model import RecommenderModel


def corrupted_copy(source: str, target: Path, damage) -> str:
    shutil.copytree(source, target)
    damage(target)
    return str(target)


def nan_item_vector(root: Path) -> None:
    path = root / "products" / "movie" / "item_vectors.npy"
    vectors = np.load(path)
    vectors[3] = np.nan
    np.save(path, vectors)


def unnormalized_item_vectors(root: Path) -> None:
    path = root / "products" / "movie" / "item_vectors.npy"
    np.save(path, np.load(path) * 2.0)


def truncated_user_tower(root: Path) -> None:
    path = root / "products" / "movie" / "user_tower.pt"
    path.write_bytes(path.read_bytes()[:100])


def future_format(root: Path) -> None:
    path = root / "bundle.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 99
    path.write_text(json.dumps(manifest))


def missing_histories(root: Path) -> None:
    (root / "histories.parquet").unlink()


def garbage_user_tower(root: Path) -> None:
    (root / "products" / "movie" / "user_tower.pt").write_bytes(b"junk")


def histories_without_item_id(root: Path) -> None:
    path = root / "histories.parquet"
    pq.write_table(pq.read_table(path).drop(["item_id"]), path)


def list_manifest(root: Path) -> None:
    (root / "bundle.json").write_text("[]")


def nan_hgnn_row(root: Path) -> None:
    path = root / "hgnn" / "embeddings.npy"
    matrix = np.load(path)
    matrix[100, 3] = np.nan
    np.save(path, matrix)


def infinite_tower_weight(root: Path) -> None:
    path = root / "products" / "movie" / "user_tower.pt"
    state = torch.load(path, weights_only=True)
    name = next(n for n, tensor in state.items() if tensor.is_floating_point())
    state[name].view(-1)[0] = float("inf")
    torch.save(state, path)


def edit_card(**changes):
    def damage(root: Path) -> None:
        path = root / "products" / "movie" / "model_card.json"
        path.write_text(json.dumps(dict(json.loads(path.read_text()), **changes)))

    damage.__name__ = "card_with_" + "_".join(changes)
    return damage


def foreign_item_type(root: Path) -> None:
    path = root / "products" / "movie" / "items.parquet"
    table = pq.read_table(path)
    types = table.column("item_type").to_pylist()
    column = table.schema.get_field_index("item_type")
    pq.write_table(table.set_column(column, "item_type", pa.array(["artist"] + types[1:])),
                   path)


@pytest.mark.parametrize(("damage", "message"), [
    (nan_item_vector, "item vector of 'movie:4' (row 3 of products/movie/item_vectors.npy) "
                      "is not finite"),
    (unnormalized_item_vectors, "not L2-normalized"),
    (truncated_user_tower, "products/movie/user_tower.pt is not a readable torch state dict"),
    (garbage_user_tower, "products/movie/user_tower.pt is not a readable torch state dict, "
                         "so it may be truncated or corrupt (struct.error"),
    (future_format, "format_version 99"),
    (missing_histories, "histories.parquet"),
    (histories_without_item_id, "histories.parquet lacks column(s) ['item_id']"),
    (list_manifest, "bundle.json must contain a JSON object, got list"),
    (nan_hgnn_row, "hgnn/embeddings.npy: row 100 (item 'movie:"),
    (infinite_tower_weight, "products/movie/user_tower.pt has non-finite values in"),
    (edit_card(product="book"), "products/movie/model_card.json describes product 'book'"),
    (edit_card(model_version="other"), "products/movie/model_card.json has model_version "
                                       "'other', but bundle.json has 'ml1m-test-1'"),
    (foreign_item_type, "1 rows of products/movie/items.parquet have an item type outside "
                        "the product's item types ['movie'], first 'movie:1' of type 'artist'"),
])
def test_model_load_rejects_corrupted_bundle(ml1m_bundle, tmp_path, caplog, damage, message):
    uri = corrupted_copy(ml1m_bundle.uri, tmp_path / "bundle", damage)
    model = RecommenderModel(ServingConfig(bundle_uri=uri))
    with caplog.at_level(logging.ERROR, logger="gfm.serving.model"):
        ready = model.load()

    assert ready is False
    assert model.ready is False
    assert model.recommender is None
    assert message in model.load_error
    assert "does not match the user tower" not in model.load_error
    [record] = [r for r in caplog.records if r.name == "gfm.serving.model"]
    assert "model gfm is not ready" in record.getMessage()
    assert message in record.getMessage()
    # One line: a BundleError is logged without a traceback.
    assert not record.exc_info
    assert "\n" not in record.getMessage()


def test_model_load_accepts_good_bundle(ml1m_bundle):
    model = RecommenderModel(ServingConfig(bundle_uri=ml1m_bundle.uri))
    assert model.load() is True
    assert model.ready is True
    assert model.load_error is None
    assert model.recommender.model_version == "ml1m-test-1"


def test_model_load_missing_folder(tmp_path):
    model = RecommenderModel(ServingConfig(bundle_uri=str(tmp_path / "nothing")))
    assert model.load() is False
    assert "bundle.json is missing" in model.load_error


@pytest.mark.slow
def test_server_stays_unready_on_corrupted_bundle(ml1m_bundle, tmp_path, launch_server):
    uri = corrupted_copy(ml1m_bundle.uri, tmp_path / "bundle", nan_item_vector)
    server = launch_server(uri)
    assert server.wait_for_http("/") == 200
    deadline = time.monotonic() + 240
    while "is not ready" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.5)
    ready = httpx.get(f"{server.url}/v1/models/gfm", timeout=10)
    v2_ready = httpx.get(f"{server.url}/v2/models/gfm/ready", timeout=10)
    predict = httpx.post(f"{server.url}/v1/models/gfm:predict",
                         json={"instances": [{"product": "movie"}]}, timeout=10)
    live = httpx.get(f"{server.url}/", timeout=10)
    log = server.log()

    assert ready.status_code == 503
    assert v2_ready.status_code == 503
    assert predict.status_code == 503
    assert live.status_code == 200
    [line] = [row for row in log.splitlines() if "gfm.serving.model" in row
              and "is not ready" in row]
    assert "ERROR" in line
    assert f"bundle {uri} was rejected" in line
    assert "is not finite" in line
