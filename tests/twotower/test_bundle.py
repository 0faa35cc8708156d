"""Tests of the serving bundle: export, load, and the errors of a broken bundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gfm import __version__, storage
from gfm.embeddings import ItemEmbeddings
from gfm.twotower import TwoTowerConfig, train_two_tower
from gfm.twotower.bundle import Bundle, BundleError, export_bundle

DATA_CARD = {"data": {"dataset": "movielens-1m-users-1-1000", "train_interactions": 1}}


@pytest.fixture(scope="module")
def llm_model(ml1m: dict, fast_settings: dict):
    """A second product, trained without HGNN inputs, so the bundle needs llm/."""
    config = dict(fast_settings, use_hgnn=False, max_epochs=1, tower_dims=[16])
    return train_two_tower("movies_llm", ["movie"], ml1m["train"], ml1m["valid"],
                           ml1m["items"], ml1m["users"], None, ml1m["llm"],
                           TwoTowerConfig.from_dict(config))


@pytest.fixture(scope="module")
def pristine(trained, llm_model, ml1m: dict, tmp_path_factory) -> Path:
    """A bundle of two products, exported once per module."""
    uri = tmp_path_factory.mktemp("bundle") / "bundle"
    export_bundle(uri, {"movies": trained, "movies_llm": llm_model},
                  histories=ml1m["train"], users=ml1m["users"], hgnn=ml1m["hgnn"],
                  llm=ml1m["llm"], model_version="2026-12-04.1",
                  model_cards={"movies": DATA_CARD})
    return uri


@pytest.fixture
def bundle_copy(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the bundle that a test may corrupt."""
    target = tmp_path / "bundle"
    shutil.copytree(pristine, target)
    return target


def test_bundle_round_trip_scores(pristine, trained, llm_model, ml1m):
    bundle = Bundle.load(pristine)
    history = bundle.history("1")

    assert bundle.model_version == "2026-12-04.1"
    assert bundle.format_version == 1
    assert sorted(bundle.products) == ["movies", "movies_llm"]
    for name, original in (("movies", trained), ("movies_llm", llm_model)):
        loaded = bundle.products[name]
        np.testing.assert_array_equal(loaded.item_vectors(), original.item_vectors())
        np.testing.assert_allclose(loaded.user_vectors([history], [bundle.user_features("1")]),
                                   original.user_vectors([history], [bundle.user_features("1")]),
                                   atol=1e-6)
    assert bundle.products["movies_llm"].encoder.source == "llm"


def test_bundle_item_index_covers_catalog(pristine, ml1m):
    bundle = Bundle.load(pristine)

    assert len(bundle.item_index) == len(ml1m["items"])
    assert set(bundle.item_index) == set(ml1m["items"]["item_id"])
    assert sorted(bundle.item_index.values()) == list(range(len(ml1m["items"])))


def test_bundle_history_oldest_first(pristine, ml1m):
    bundle = Bundle.load(pristine)
    train = ml1m["train"]
    user = train[train["user_id"] == "7"].sort_values("timestamp", kind="stable")

    history = bundle.history("7")

    assert history == user["item_id"].tolist()
    assert bundle.history("no-such-user") is None
    assert bundle.history(7) == history


def test_bundle_user_features_and_popularity(pristine, trained):
    bundle = Bundle.load(pristine)

    assert bundle.user_features("1") == {"gender": "F", "age": "1", "occupation": "10"}
    assert bundle.user_features("no-such-user") is None
    np.testing.assert_array_equal(bundle.popularity("movies"), trained.popularity)
    with pytest.raises(KeyError, match="no product 'podcasts'"):
        bundle.popularity("podcasts")


def test_bundle_model_card_contents(pristine, trained):
    card = Bundle.load(pristine).model_card("movies")

    assert card["data"] == DATA_CARD["data"]
    assert card["settings"] == trained.config.to_dict()
    assert card["metrics"]["best_valid_recall"] == trained.metrics["best_valid_recall"]
    assert card["code_version"]["gfm"] == __version__
    assert len(card["code_version"]["git_commit"] or "") in (0, 40)
    assert card["inputs"]["history_source"] == "hgnn"
    assert card["inputs"]["hgnn"]["dim"] == 32
    assert card["model_version"] == "2026-12-04.1"


def test_bundle_layout_matches_contract(pristine):
    files = {Path(p).relative_to(pristine).as_posix() for p in storage.list_files(pristine)}

    for name in ("bundle.json", "histories.parquet", "users.parquet",
                 "hgnn/embeddings.npy", "llm/items.parquet",
                 "products/movies/user_tower.pt", "products/movies/config.json",
                 "products/movies/item_vectors.npy", "products/movies/items.parquet",
                 "products/movies/model_card.json"):
        assert name in files
    assert not any(f.startswith("products/movies/history/") for f in files)
    histories = storage.read_table(pristine / "histories.parquet")
    assert histories.column_names == ["user_id", "item_id", "timestamp"]


def test_bundle_without_users(trained, ml1m, tmp_path: Path):
    export_bundle(tmp_path / "b", {"movies": trained}, histories=ml1m["train"],
                  users=None, hgnn=ml1m["hgnn"], llm=None, model_version="v1",
                  model_cards={})

    bundle = Bundle.load(tmp_path / "b")

    assert bundle.user_features("1") is None
    assert list(bundle.embeddings) == ["hgnn"]
    assert bundle.model_card("movies")["product"] == "movies"


# Broken bundles -------------------------------------------------------------


def test_load_rejects_missing_manifest(bundle_copy):
    (bundle_copy / "bundle.json").unlink()

    with pytest.raises(BundleError, match="bundle.json is missing"):
        Bundle.load(bundle_copy)


def test_load_rejects_other_format_version(bundle_copy):
    manifest = storage.read_json(bundle_copy / "bundle.json")
    manifest["format_version"] = 2
    storage.write_json(bundle_copy / "bundle.json", manifest)

    with pytest.raises(BundleError, match="format_version 2; this code reads version 1"):
        Bundle.load(bundle_copy)


def test_load_rejects_mismatched_item_vector_dim(bundle_copy):
    path = bundle_copy / "products" / "movies" / "item_vectors.npy"
    storage.write_array(path, np.zeros((3883, 8), dtype=np.float32))

    with pytest.raises(BundleError, match=r"product 'movies'.*shape \(3883, 8\)"):
        Bundle.load(bundle_copy)


def test_load_rejects_mismatched_hgnn_dim(bundle_copy):
    path = bundle_copy / "hgnn" / "embeddings.npy"
    storage.write_array(path, np.zeros((3883, 16), dtype=np.float32))

    with pytest.raises(BundleError, match="history embeddings have dim 16"):
        Bundle.load(bundle_copy)


def test_load_rejects_missing_user_tower(bundle_copy):
    (bundle_copy / "products" / "movies_llm" / "user_tower.pt").unlink()

    with pytest.raises(BundleError, match=r"missing product 'movies_llm'.*user_tower\.pt"):
        Bundle.load(bundle_copy)


def test_load_rejects_missing_embeddings_file(bundle_copy):
    (bundle_copy / "llm" / "items.parquet").unlink()

    with pytest.raises(BundleError, match=r"missing llm.*items\.parquet"):
        Bundle.load(bundle_copy)


def test_load_rejects_missing_histories(bundle_copy):
    (bundle_copy / "histories.parquet").unlink()

    with pytest.raises(BundleError, match="missing histories.parquet"):
        Bundle.load(bundle_copy)


def test_load_rejects_product_folder_mismatch(bundle_copy):
    shutil.move(bundle_copy / "products" / "movies_llm", bundle_copy / "products" / "films")

    with pytest.raises(BundleError, match=r"lists products \['movies', 'movies_llm'\] but "
                                          r"products/ contains \['films', 'movies'\]"):
        Bundle.load(bundle_copy)


def test_load_rejects_renamed_product(bundle_copy):
    config_path = bundle_copy / "products" / "movies" / "config.json"
    config = storage.read_json(config_path)
    config["product"] = "films"
    storage.write_json(config_path, config)

    with pytest.raises(BundleError, match="contains the model of product 'films'"):
        Bundle.load(bundle_copy)


def test_load_rejects_items_outside_catalog(bundle_copy, ml1m):
    llm = ml1m["llm"]
    keep = list(range(1, len(llm)))
    for name, table in (("hgnn", ml1m["hgnn"]), ("llm", llm)):
        ItemEmbeddings([table.item_ids[r] for r in keep], [table.item_types[r] for r in keep],
                       table.matrix[keep]).save(bundle_copy / name)

    with pytest.raises(BundleError, match=f"first '{llm.item_ids[0]}'"):
        Bundle.load(bundle_copy)


# Export errors --------------------------------------------------------------


def test_export_rejects_card_of_unknown_product(trained, ml1m, tmp_path: Path):
    with pytest.raises(BundleError, match=r"model cards for unknown product\(s\) \['films'\]"):
        export_bundle(tmp_path / "b", {"movies": trained}, histories=ml1m["train"],
                      users=None, hgnn=ml1m["hgnn"], llm=None, model_version="v1",
                      model_cards={"films": {}})
    assert not (tmp_path / "b").exists()


def test_export_rejects_misnamed_product(trained, ml1m, tmp_path: Path):
    with pytest.raises(BundleError, match="key 'films' contains the model of product 'movies'"):
        export_bundle(tmp_path / "b", {"films": trained}, histories=ml1m["train"],
                      users=None, hgnn=ml1m["hgnn"], llm=None, model_version="v1",
                      model_cards={})


def test_export_rejects_missing_history_embeddings(trained, ml1m, tmp_path: Path):
    with pytest.raises(BundleError, match="over hgnn embeddings, but hgnn=None"):
        export_bundle(tmp_path / "b", {"movies": trained}, histories=ml1m["train"],
                      users=None, hgnn=None, llm=ml1m["llm"], model_version="v1",
                      model_cards={})


def test_export_rejects_other_embeddings(trained, ml1m, tmp_path: Path):
    hgnn = ml1m["hgnn"]
    other = ItemEmbeddings(hgnn.item_ids, hgnn.item_types, hgnn.matrix + 1.0)

    with pytest.raises(BundleError, match="trained on other hgnn embeddings"):
        export_bundle(tmp_path / "b", {"movies": trained}, histories=ml1m["train"],
                      users=None, hgnn=other, llm=None, model_version="v1",
                      model_cards={})


def test_export_rejects_histories_without_item_id(trained, ml1m, tmp_path: Path):
    histories = pd.DataFrame({"user_id": ["1"]})

    with pytest.raises(ValueError, match=r"histories table lacks column\(s\) \['item_id'\]"):
        export_bundle(tmp_path / "b", {"movies": trained}, histories=histories,
                      users=None, hgnn=ml1m["hgnn"], llm=None, model_version="v1",
                      model_cards={})


def test_bundle_round_trip_through_gcs(trained, ml1m, gcs_emulator):
    bucket = gcs_emulator.create_bucket("twotower-bundle")
    uri = f"{bucket}/runs/1/bundle"
    export_bundle(uri, {"movies": trained}, histories=ml1m["train"], users=ml1m["users"],
                  hgnn=ml1m["hgnn"], llm=None, model_version="gcs-1", model_cards={})

    bundle = Bundle.load(uri)

    assert sorted(bundle.products) == ["movies"]
    assert bundle.user_features("1")["gender"] == "F"
    history = bundle.history("1")
    np.testing.assert_allclose(bundle.products["movies"].user_vectors([history]),
                               trained.user_vectors([history]), atol=1e-6)


def test_export_keeps_latest_repeat(trained, ml1m, tmp_path: Path):
    first = ml1m["train"][ml1m["train"]["user_id"] == "1"].sort_values("timestamp")
    repeat = first.iloc[[0]].assign(timestamp=first["timestamp"].max() + pd.Timedelta("1D"))
    histories = pd.concat([repeat, first])
    export_bundle(tmp_path / "b", {"movies": trained}, histories=histories, users=None,
                  hgnn=ml1m["hgnn"], llm=None, model_version="v1", model_cards={})

    history = Bundle.load(tmp_path / "b").history("1")

    assert len(history) == len(first)
    assert history[-1] == first["item_id"].iloc[0]
    assert history[:-1] == first["item_id"].iloc[1:].tolist()
