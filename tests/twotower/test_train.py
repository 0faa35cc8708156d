"""Tests of train_two_tower on a MovieLens-1M slice and on Last.fm-2k."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from gfm.embeddings import ItemEmbeddings
from gfm.twotower import TwoTowerConfig, train_two_tower


def _train(ml1m: dict, config: dict, **overrides):
    arguments = dict(product="movies", item_types=["movie"], train=ml1m["train"],
                     valid=ml1m["valid"], items=ml1m["items"], users=ml1m["users"],
                     hgnn=ml1m["hgnn"], llm=ml1m["llm"],
                     config=TwoTowerConfig.from_dict(config))
    arguments.update(overrides)
    return train_two_tower(**arguments)


def test_train_loss_falls(trained):
    losses = [epoch["loss"] for epoch in trained.metrics["epochs"]]
    assert len(losses) >= 2
    assert losses[-1] < losses[0]
    assert all(np.isfinite(losses))


def test_train_beats_popularity_on_valid(trained):
    metrics = trained.metrics
    assert metrics["eval_k"] == 20
    assert metrics["popularity_valid_recall"] > 0
    assert metrics["best_valid_recall"] > metrics["popularity_valid_recall"]
    best = max(epoch["valid_recall"] for epoch in metrics["epochs"])
    assert metrics["best_valid_recall"] == best


def test_train_counts_inputs(trained, ml1m):
    counts = trained.metrics["counts"]
    assert counts["items"] == len(ml1m["items"])
    assert counts["train_pairs"] == len(ml1m["train"])
    assert counts["users"] == ml1m["train"]["user_id"].nunique()
    assert counts["valid_pairs"] == len(ml1m["valid"])
    assert counts["user_categorical_features"] == ["gender", "age", "occupation"]
    assert counts["history_types"] == ["movie"]
    assert counts["valid_users_without_history"] == 0
    assert counts["item_dense_dim"] == ml1m["hgnn"].dim + ml1m["llm"].dim
    assert counts["item_fields"] == ["genres"]
    assert sum(trained.metrics["dropped"].values()) == 0


def test_item_vectors_unit_norm(trained, ml1m):
    vectors = trained.item_vectors()
    assert vectors.shape == (len(ml1m["items"]), 32)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert trained.item_ids == ml1m["items"]["item_id"].tolist()


def test_user_vectors_from_raw_history(trained, ml1m):
    history = ml1m["train"].loc[ml1m["train"]["user_id"] == "1", "item_id"].tolist()
    features = ml1m["users"].set_index("user_id").loc["1"].to_dict()

    vectors = trained.user_vectors([history, history, [], ["movie:1"]],
                                   [features, None, None, {"gender": "unseen"}])

    assert vectors.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])
    assert not np.allclose(vectors[1], vectors[2])


def test_user_vectors_ignore_unknown_ids(trained, ml1m):
    history = ml1m["train"].loc[ml1m["train"]["user_id"] == "2", "item_id"].tolist()

    plain = trained.user_vectors([history])
    noisy = trained.user_vectors([history + ["movie:999999", "artist:1", history[0]]])

    np.testing.assert_allclose(plain, noisy, atol=1e-6)


def test_user_vectors_follow_history_genre(trained, ml1m):
    items = ml1m["items"].set_index("item_id")
    children = [i for i, genres in items["genres"].items()
                if "Animation" in genres and "Children's" in genres]

    scores = trained.scores([children[:20]])[0]
    seen = set(children[:20])
    ranked = [trained.item_ids[r] for r in np.argsort(-scores) if trained.item_ids[r] not in seen]
    top_genres = [set(items.loc[i, "genres"]) for i in ranked[:10]]

    family = sum(bool(g & {"Animation", "Children's"}) for g in top_genres)
    assert family >= 5


def test_train_rejects_missing_hgnn(ml1m, fast_config):
    with pytest.raises(ValueError, match="use_hgnn is true but no HGNN embeddings"):
        _train(ml1m, fast_config, hgnn=None)


def test_train_rejects_unknown_item_type(ml1m, fast_config):
    with pytest.raises(ValueError, match=r"\['podcast'\] of product 'movies'"):
        _train(ml1m, fast_config, item_types=["movie", "podcast"])


def test_train_rejects_string_item_types(ml1m, fast_config):
    with pytest.raises(ValueError, match="non-empty list of item types"):
        _train(ml1m, fast_config, item_types="movie")


def test_train_rejects_missing_item_field(ml1m, fast_config):
    fast_config["item_fields"] = ["studio"]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['studio'\]"):
        _train(ml1m, fast_config)


def test_train_without_hgnn_uses_llm_history(ml1m, fast_config):
    fast_config.update(use_hgnn=False, max_epochs=1)

    model = _train(ml1m, fast_config, hgnn=None)

    assert model.encoder.source == "llm"
    assert model.encoder.history_dim == ml1m["llm"].dim
    assert model.config.use_hgnn is False
    assert len(model.metrics["epochs"]) == 1


def test_train_counts_items_without_embedding(ml1m, fast_config):
    hgnn = ml1m["hgnn"]
    rated = ml1m["train"]["item_id"].value_counts()
    removed = set(rated.index[:3])
    keep = [r for r, i in enumerate(hgnn.item_ids) if i not in removed]
    partial = ItemEmbeddings([hgnn.item_ids[r] for r in keep],
                             [hgnn.item_types[r] for r in keep], hgnn.matrix[keep])
    fast_config.update(max_epochs=1, use_llm=False)

    model = _train(ml1m, fast_config, hgnn=partial, llm=None)

    dropped = model.metrics["dropped"]
    assert dropped["items_without_hgnn_embedding"] == 3
    assert dropped["train_pairs_on_items_without_embedding"] == int(rated.iloc[:3].sum())
    assert dropped["train_items_without_history_embedding"] == int(rated.iloc[:3].sum())
    assert not removed & set(model.item_ids)
    assert len(model.item_ids) == len(ml1m["items"]) - 3


def test_train_positive_min_weight(ml1m, fast_config):
    fast_config.update(max_epochs=1, positive_min_weight=4.0)

    model = _train(ml1m, fast_config)

    low_train = int((ml1m["train"]["weight"] < 4.0).sum())
    low_valid = int((ml1m["valid"]["weight"] < 4.0).sum())
    assert model.metrics["dropped"]["train_rows_below_positive_min_weight"] == low_train
    assert model.metrics["dropped"]["valid_rows_below_positive_min_weight"] == low_valid
    assert model.metrics["counts"]["train_pairs"] == len(ml1m["train"]) - low_train
    assert model.popularity.sum() == len(ml1m["train"]) - low_train


def test_train_without_valid_runs_every_epoch(ml1m, fast_config):
    fast_config.update(max_epochs=2, tower_dims=[16], num_threads=1)
    torch.set_num_threads(2)

    model = _train(ml1m, fast_config, valid=ml1m["valid"].iloc[:0])

    assert torch.get_num_threads() == 2
    assert len(model.metrics["epochs"]) == 2
    assert model.metrics["best_valid_recall"] is None
    assert model.metrics["best_epoch"] == 2
    assert model.metrics["popularity_valid_recall"] is None


def test_train_two_item_types_share_history(lastfm, fast_config):
    fast_config.update(max_epochs=2, use_user_features=False)
    split = lastfm["split"]

    model = train_two_tower(
        product="artists", item_types=["artist"], train=split.train, valid=split.valid,
        items=lastfm["dataset"].items, users=None, hgnn=lastfm["hgnn"],
        llm=lastfm["llm"], config=TwoTowerConfig.from_dict(fast_config))

    counts = model.metrics["counts"]
    assert counts["history_types"] == ["artist", "tag"]
    assert set(model.item_types_of_rows) == {"artist"}
    tag_pairs = split.train.loc[split.train["item_id"].str.startswith("tag:"),
                                ["user_id", "item_id"]].drop_duplicates()
    assert model.metrics["dropped"]["train_pairs_of_other_item_types"] == len(tag_pairs)
    user = split.train["user_id"].iloc[0]
    history = split.train.loc[split.train["user_id"] == user, "item_id"].tolist()
    artists = [i for i in history if i.startswith("artist:")]
    tags = [i for i in history if i.startswith("tag:")] or ["tag:1"]
    vectors = model.user_vectors([artists, artists + tags])
    assert not np.allclose(vectors[0], vectors[1])
