"""Tests of the two-tower training inputs and early stopping on small synthetic data."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from gfm.embeddings import ItemEmbeddings
from gfm.twotower import TwoTowerConfig, train_two_tower
from gfm.twotower.features import UserEncoder
from gfm.twotower.inputs import build_training_data, select_product_items
from gfm.twotower.validation import recall_at_k

NUM_MOVIES, NUM_TAGS, NUM_USERS = 60, 10, 80
ITEM_IDS = [f"movie:{i}" for i in range(NUM_MOVIES)] + [f"tag:{i}" for i in range(NUM_TAGS)]
ITEM_TYPES = ["movie"] * NUM_MOVIES + ["tag"] * NUM_TAGS
TINY = {"tower_dims": [8], "max_epochs": 1, "num_threads": 1, "item_fields": []}


def _items() -> pd.DataFrame:
    return pd.DataFrame({"item_id": ITEM_IDS, "item_type": ITEM_TYPES,
                         "genres": [["a"]] * len(ITEM_IDS)})


def _embeddings(dim: int, seed: int) -> ItemEmbeddings:
    matrix = np.random.default_rng(seed).normal(size=(len(ITEM_IDS), dim)).astype(np.float32)
    return ItemEmbeddings(ITEM_IDS, ITEM_TYPES, matrix)


@pytest.fixture(scope="module")
def interactions() -> dict:
    """``train`` and ``valid``: 12 rated movies and 2 tags per user, 15% valid."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(NUM_USERS):
        for movie in rng.choice(NUM_MOVIES, 12, replace=False):
            rows.append((str(user), f"movie:{movie}", float(rng.integers(1, 6))))
        for tag in rng.choice(NUM_TAGS, 2, replace=False):
            rows.append((str(user), f"tag:{tag}", 1.0))
    table = pd.DataFrame(rows, columns=["user_id", "item_id", "weight"])
    in_valid = rng.random(len(table)) < 0.15
    return {"train": table[~in_valid].reset_index(drop=True),
            "valid": table[in_valid].reset_index(drop=True)}


def test_valid_pairs_of_other_types_counted(interactions):
    valid = interactions["valid"]
    model = train_two_tower("movies", ["movie"], interactions["train"], valid, _items(),
                            hgnn=_embeddings(8, 1), llm=_embeddings(6, 2),
                            config=TwoTowerConfig.from_dict(TINY))
    dropped = model.metrics["dropped"]
    counted = (model.metrics["counts"]["valid_pairs"] + dropped["valid_pairs_seen_in_train"]
               + dropped["valid_pairs_on_items_without_embedding"])

    assert dropped["valid_pairs_of_other_item_types"] == valid["item_id"].str.startswith(
        "tag:").sum()
    assert counted + dropped["valid_pairs_of_other_item_types"] == len(valid)


def test_target_left_out_of_history_mean(interactions):
    train = interactions["train"]
    hgnn = _embeddings(8, 1)
    config = TwoTowerConfig.from_dict(dict(TINY, positive_min_weight=4.0))
    encoder = UserEncoder.fit(hgnn, "hgnn", None, None, config.min_category_count)
    dropped: Counter = Counter()
    catalog = select_product_items("movies", ["movie"], _items(), hgnn, _embeddings(6, 2),
                                   encoder, config, dropped)
    data = build_training_data(train, interactions["valid"], catalog, encoder, None,
                               dropped, config.positive_min_weight)

    movie_type = encoder.history_types.index("movie")
    for example in (0, 5, 17):
        users = data.example_users[example:example + 1]
        targets = data.example_items[example:example + 1]
        user_id = data.user_ids[int(users[0])]
        target_id = catalog.item_ids[int(targets[0])]
        own = train[(train["user_id"] == user_id) & train["item_id"].str.startswith("movie:")]
        rest = own.loc[own["item_id"] != target_id, "item_id"].unique().tolist()

        excluded = data.user_inputs(users, targets, catalog, encoder)
        included = data.user_inputs(users)
        np.testing.assert_allclose(excluded.history_mean[0, movie_type].numpy(),
                                   hgnn.select(rest).mean(axis=0), atol=1e-5)
        assert target_id in own["item_id"].tolist()
        assert not torch.allclose(excluded.history_mean, included.history_mean)


def test_best_epoch_weights_restored(interactions):
    # A high learning rate makes validation recall peak before the last epoch,
    # so the returned model must be the best epoch's, not the last one's.
    train, valid = interactions["train"], interactions["valid"]
    hgnn, llm = _embeddings(8, 1), _embeddings(6, 2)
    config = TwoTowerConfig.from_dict({"tower_dims": [16], "max_epochs": 6, "patience": 6,
                                       "batch_size": 64, "num_threads": 1,
                                       "item_fields": [], "learning_rate": 0.05})
    model = train_two_tower("movies", ["movie"], train, valid, _items(), hgnn=hgnn,
                            llm=llm, config=config)
    metrics = model.metrics
    last_recall = metrics["epochs"][-1]["valid_recall"]

    encoder = UserEncoder.fit(hgnn, "hgnn", None, None, config.min_category_count)
    catalog = select_product_items("movies", ["movie"], _items(), hgnn, llm, encoder,
                                   config, Counter())
    data = build_training_data(train, valid, catalog, encoder, None, Counter())
    user_ids = [data.user_ids[row] for row in data.valid_users]
    histories = [train.loc[train["user_id"] == user, "item_id"].tolist() for user in user_ids]
    recall = recall_at_k(torch.from_numpy(model.user_vectors(histories)),
                         torch.from_numpy(model.item_vectors()), data.valid_targets,
                         [data.seen[row] for row in data.valid_users], config.eval_k)

    assert metrics["best_epoch"] < len(metrics["epochs"])
    assert last_recall != pytest.approx(metrics["best_valid_recall"])
    assert recall == pytest.approx(metrics["best_valid_recall"])


def test_duplicate_user_ids_rejected(interactions):
    users = pd.DataFrame({"user_id": ["0", "0", "1"], "gender": ["F", "M", "F"]})

    with pytest.raises(ValueError, match=r"users.user_id must be unique.*\['0'\]"):
        train_two_tower("movies", ["movie"], interactions["train"], interactions["valid"],
                        _items(), users, hgnn=_embeddings(8, 1), llm=_embeddings(6, 2),
                        config=TwoTowerConfig.from_dict(TINY))
