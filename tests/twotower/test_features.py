"""Tests of the item field, user feature and history encoders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from gfm.embeddings import ItemEmbeddings
from gfm.twotower.features import (
    MISSING_INDEX,
    OOV_INDEX,
    CategoricalVocab,
    UserEncoder,
    encode_item_field,
    item_field_tokens,
)


@pytest.fixture
def history() -> ItemEmbeddings:
    matrix = np.array([[1, 0], [0, 1], [3, 3], [5, 7]], dtype=np.float32)
    return ItemEmbeddings(["movie:1", "movie:2", "tag:1", "tag:2"],
                          ["movie", "movie", "tag", "tag"], matrix)


def test_vocab_reserves_missing_and_oov():
    vocab = CategoricalVocab.fit(["a", "b", "a", "c", "a", "b"], min_count=2)

    assert vocab.values == ["a", "b"]
    assert vocab.size == 4
    assert vocab.lookup("a") == 2
    assert vocab.lookup("c") == OOV_INDEX
    assert vocab.lookup(None) == MISSING_INDEX
    assert vocab.lookup(float("nan")) == MISSING_INDEX


def test_item_field_tokens_cases():
    assert item_field_tokens("genres", ["Drama", "War"]) == ["Drama", "War"]
    assert item_field_tokens("genres", np.array(["Drama"])) == ["Drama"]
    assert item_field_tokens("release_year", 1995) == ["1990s"]
    assert item_field_tokens("language", "en") == ["en"]
    assert item_field_tokens("genres", None) == []
    assert item_field_tokens("release_year", float("nan")) == []


def test_encode_item_field_pads_bags():
    vocab, matrix, truncated = encode_item_field(
        "genres", [["Drama", "War"], None, ["Drama"], ["Rare"]], min_count=2)

    assert matrix.shape == (4, 2)
    assert matrix.tolist() == [[2, OOV_INDEX], [0, 0], [2, 0], [OOV_INDEX, 0]]
    assert vocab.values == ["Drama"]
    assert truncated == 0


def test_encode_item_field_counts_truncated_tokens():
    long_bag = [f"tag{i}" for i in range(40)]

    _, matrix, truncated = encode_item_field("tags", [long_bag, ["tag1"]], min_count=1)

    assert matrix.shape == (2, 32)
    assert truncated == 8


def test_encoder_means_per_type_and_mask(history):
    encoder = UserEncoder(history, "hgnn")

    inputs = encoder.encode([["movie:1", "movie:2", "tag:2"], ["tag:1", "nope"], []])

    assert encoder.history_types == ["movie", "tag"]
    assert inputs.history_mean.shape == (3, 2, 2)
    torch.testing.assert_close(inputs.history_mean[0], torch.tensor([[0.5, 0.5], [5.0, 7.0]]))
    torch.testing.assert_close(inputs.history_mean[1], torch.tensor([[0.0, 0.0], [3.0, 3.0]]))
    assert inputs.history_mask.tolist() == [[1, 1], [0, 1], [0, 0]]
    assert inputs.history_mean[2].abs().sum() == 0


def test_encoder_repeated_ids_count_once(history):
    encoder = UserEncoder(history, "hgnn")

    once = encoder.encode([["movie:1", "movie:2"]])
    twice = encoder.encode([["movie:1", "movie:1", "movie:2"]])

    torch.testing.assert_close(once.history_mean, twice.history_mean)


def test_encoder_fits_user_features(history):
    users = pd.DataFrame({"user_id": ["1", "2", "3"], "gender": ["F", "M", "F"],
                          "income": [10.0, 20.0, np.nan]})

    encoder = UserEncoder.fit(history, "hgnn", users, None, min_count=1)
    inputs = encoder.encode([[], [], []], [{"gender": "M", "income": 20.0}, None,
                                           {"gender": "X"}])

    assert [name for name, _ in encoder.categorical] == ["gender"]
    assert [name for name, _, _ in encoder.numeric] == ["income"]
    assert inputs.categorical[:, 0].tolist() == [3, MISSING_INDEX, OOV_INDEX]
    assert inputs.numeric[0, 0].item() == pytest.approx(5.0 / np.std([10, 20], ddof=1))
    assert inputs.numeric[1:, 0].tolist() == [0.0, 0.0]


def test_encoder_rejects_unknown_user_field(history):
    users = pd.DataFrame({"user_id": ["1"], "gender": ["F"]})

    with pytest.raises(ValueError, match=r"user_fields \['zip'\] are not columns"):
        UserEncoder.fit(history, "hgnn", users, ["zip"], min_count=1)


def test_encoder_spec_round_trip(history):
    users = pd.DataFrame({"user_id": ["1", "2"], "age": ["18", "25"]})
    encoder = UserEncoder.fit(history, "llm", users, ["age"], min_count=1)

    rebuilt = UserEncoder.from_spec(encoder.spec(), history)

    original = encoder.encode([["tag:1"]], [{"age": "25"}])
    copy = rebuilt.encode([["tag:1"]], [{"age": "25"}])
    assert rebuilt.source == "llm"
    assert torch.equal(original.categorical, copy.categorical)
    torch.testing.assert_close(original.history_mean, copy.history_mean)


def test_from_spec_rejects_other_item_types(history):
    spec = UserEncoder(history, "hgnn").spec()
    movies_only = ItemEmbeddings(["movie:1"], ["movie"], np.ones((1, 2), dtype=np.float32))

    with pytest.raises(ValueError, match=r"cover item types \['movie'\].*expects"):
        UserEncoder.from_spec(spec, movies_only)
