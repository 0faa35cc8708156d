"""The two-tower KFP components, called through ``python_func``."""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp import dsl

from gfm.components.twotower import export_bundle, train_two_tower
from gfm.twotower import ProductModel
from gfm.twotower.bundle import Bundle


@pytest.fixture
def inputs(ml1m_dataset, ml1m: dict, tmp_path: Path) -> dict[str, dsl.Artifact]:
    ml1m_dataset.save(tmp_path / "dataset")
    ml1m["split"].save(tmp_path / "split")
    ml1m["llm"].save(tmp_path / "llm")
    ml1m["hgnn"].save(tmp_path / "hgnn")
    return {
        "dataset": dsl.Dataset(name="dataset", uri=str(tmp_path / "dataset"), metadata={}),
        "split": dsl.Dataset(name="split", uri=str(tmp_path / "split"), metadata={}),
        "llm_embeddings": dsl.Artifact(name="llm", uri=str(tmp_path / "llm"), metadata={}),
        "hgnn_embeddings": dsl.Artifact(name="hgnn", uri=str(tmp_path / "hgnn"),
                                        metadata={}),
    }


def _train(inputs: dict, tmp_path: Path, config: dict) -> tuple[dsl.Model, dsl.Metrics]:
    model = dsl.Model(name="model", uri=str(tmp_path / "model"), metadata={})
    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={})
    train_two_tower.python_func(**inputs, product="movies", item_types=["movie"],
                                model=model, metrics=metrics, config=config)
    return model, metrics


def test_train_component_writes_model_and_metrics(inputs, tmp_path: Path, fast_config):
    fast_config.update(max_epochs=2, tower_dims=[16])

    model, metrics = _train(inputs, tmp_path, fast_config)

    loaded = ProductModel.load(model.path)
    assert loaded.product == "movies"
    assert loaded.config.max_epochs == 2
    assert loaded.metrics["data"]["dataset"] == "movielens-1m-users-1-1000"
    assert loaded.metrics["data"]["split"]["protocols"] == {"rating": "leave_last_n"}
    assert model.metadata["dim"] == 16
    assert model.metadata["history_source"] == "hgnn"
    assert model.metadata["best_valid_recall"] == loaded.metrics["best_valid_recall"]
    assert metrics.metadata["items"] == 3883
    assert metrics.metadata["epochs"] == 2
    assert metrics.metadata["dropped_train_duplicate_pairs"] == 0
    assert metrics.metadata["best_valid_recall"] > 0


def test_train_component_rejects_unknown_setting(inputs, tmp_path: Path):
    with pytest.raises(ValueError, match=r"unknown two-tower setting\(s\) \['products'\]"):
        _train(inputs, tmp_path, {"products": {"movies": ["movie"]}})


def test_export_component_writes_loadable_bundle(inputs, tmp_path: Path, fast_config):
    fast_config.update(max_epochs=1, tower_dims=[16])
    model, _ = _train(inputs, tmp_path, fast_config)
    bundle = dsl.Model(name="bundle", uri=str(tmp_path / "bundle"), metadata={})

    export_bundle.python_func(models=[model], **inputs, model_version="run-7", bundle=bundle)

    loaded = Bundle.load(bundle.path)
    assert loaded.model_version == "run-7"
    assert sorted(loaded.products) == ["movies"]
    assert loaded.model_card("movies")["data"]["items"] == 3883
    assert loaded.history("1") is not None
    assert bundle.metadata["products"] == ["movies"]
    assert bundle.metadata["format_version"] == 1
    assert bundle.metadata["items_per_product"] == {"movies": 3883}
    assert bundle.metadata["history_parts"] == ["train", "valid"]


def test_export_histories_follow_evaluation(inputs, ml1m: dict, tmp_path: Path, fast_config):
    # Known users are served with the history the evaluation scored them with:
    # train and valid by default, train alone when the evaluation sets that.
    fast_config.update(max_epochs=1, tower_dims=[16])
    model, _ = _train(inputs, tmp_path, fast_config)
    split = ml1m["split"]
    user = split.valid["user_id"].iloc[0]
    valid_items = set(split.valid.loc[split.valid["user_id"] == user, "item_id"])
    histories = {}
    for name, config in (("default", {}), ("train", {"history_parts": ["train"]})):
        bundle = dsl.Model(name="bundle", uri=str(tmp_path / f"bundle-{name}"), metadata={})
        export_bundle.python_func(models=[model], **inputs, model_version="v", bundle=bundle,
                                  evaluation_config=config)
        histories[name] = set(Bundle.load(bundle.path).history(user))

    assert valid_items <= histories["default"]
    assert not valid_items & histories["train"]
    assert len(histories["default"]) == len(histories["train"]) + len(valid_items)


def test_export_component_rejects_repeated_product(inputs, tmp_path: Path, fast_config):
    fast_config.update(max_epochs=1, tower_dims=[16])
    model, _ = _train(inputs, tmp_path, fast_config)
    bundle = dsl.Model(name="bundle", uri=str(tmp_path / "bundle"), metadata={})

    with pytest.raises(ValueError, match="two product models for product 'movies'"):
        export_bundle.python_func(models=[model, model], **inputs, model_version="v",
                                  bundle=bundle)
