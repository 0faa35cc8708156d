"""Tests of TwoTowerConfig."""

from __future__ import annotations

import pytest

from gfm.twotower import TwoTowerConfig


def test_from_dict_empty_gives_defaults():
    config = TwoTowerConfig.from_dict({})

    assert config == TwoTowerConfig()
    assert TwoTowerConfig.from_dict(None) == TwoTowerConfig()
    assert config.output_dim == config.tower_dims[-1]
    assert config.history_source == "hgnn"


def test_from_dict_rejects_unknown_key():
    with pytest.raises(ValueError, match=r"unknown two-tower setting\(s\) \['hidden'\]"):
        TwoTowerConfig.from_dict({"hidden": [64], "max_epochs": 2})


def test_from_dict_converts_lists():
    config = TwoTowerConfig.from_dict({"tower_dims": [512, 256, 128],
                                       "item_fields": ["genres", "language"],
                                       "user_fields": ["age"]})

    assert config.tower_dims == (512, 256, 128)
    assert config.item_fields == ("genres", "language")
    assert config.user_fields == ("age",)
    assert config.output_dim == 128


def test_to_dict_round_trip():
    config = TwoTowerConfig(tower_dims=(32, 16), use_hgnn=False, positive_min_weight=4.0)

    values = config.to_dict()

    assert values["tower_dims"] == [32, 16]
    assert values["item_fields"] == ["genres"]
    assert TwoTowerConfig.from_dict(values) == config
    assert config.history_source == "llm"


@pytest.mark.parametrize("values, message", [
    ({"use_hgnn": False, "use_llm": False}, "use_hgnn and use_llm are both false"),
    ({"tower_dims": []}, "tower_dims must be a non-empty list"),
    ({"tower_dims": [64, 0]}, "tower_dims must be a non-empty list"),
    ({"temperature": 0.0}, "temperature must be positive"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"batch_size": 1}, "batch_size must be at least 2"),
    ({"max_epochs": 0}, "max_epochs must be a positive integer"),
    ({"patience": 1.5}, "patience must be a positive integer"),
    ({"learning_rate": -1e-3}, "learning_rate must be positive"),
    ({"weight_decay": -1.0}, "weight_decay must be >= 0"),
    ({"positive_min_weight": "4"}, "positive_min_weight must be a number"),
    ({"num_threads": 0}, "num_threads must be a positive integer"),
    ({"num_threads": 1.5}, "num_threads must be a positive integer"),
    ({"item_fields": "genres"}, r"item_fields must be a list of column names, got 'genres'"),
    ({"user_fields": "age"}, r"user_fields must be a list of column names, got 'age'"),
    ({"item_fields": ["genres", 3]}, "item_fields must be a list of column names"),
    ({"tower_dims": 128}, r"tower_dims must be a list of integers, got 128; write \[128\]"),
    ({"tower_dims": [64.0, 32]}, "tower_dims must be a list of integers"),
    ({"max_epochs": 2.0}, "max_epochs must be a positive integer, got 2.0"),
    ({"batch_size": True}, "batch_size must be a positive integer, got True"),
    ({"positive_min_weight": True}, "positive_min_weight must be a number or null, got True"),
    ({"temperature": "0.05"}, "temperature must be a number, got '0.05'"),
    ({"learning_rate": "1e-3"}, "learning_rate must be a number"),
])
def test_config_rejects_invalid_value(values, message):
    with pytest.raises(ValueError, match=message):
        TwoTowerConfig.from_dict(values)
