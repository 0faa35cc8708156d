"""GraphConfig defaults, from_dict and validation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gfm.graph import GraphConfig
from gfm.graph.config import MAX_COUNT, MAX_WINDOW_DAYS


def test_defaults():
    config = GraphConfig()

    assert config.window_days == 90.0
    assert config.window_reference == "global"
    assert config.untimed == "keep"
    assert config.weight == "jaccard"
    assert config.min_count == 2
    assert config.strict is False


def test_from_dict_round_trip():
    settings = {"window_days": None, "max_distance": None, "top_k": 10, "weight": "pmi"}
    config = GraphConfig.from_dict(settings)

    assert config.window_days is None
    assert config.max_distance is None
    assert config.top_k == 10
    assert GraphConfig.from_dict(config.to_dict()) == config
    assert GraphConfig.from_dict({}) == GraphConfig()


def test_from_dict_whole_floats():
    config = GraphConfig.from_dict(
        {"min_count": 3.0, "top_k": 20.0, "window_days": 30.0}
    )

    assert config.min_count == 3
    assert isinstance(config.min_count, int)
    assert config.top_k == 20
    assert isinstance(config.top_k, int)
    assert config.window_days == 30.0


def test_from_dict_unknown_key():
    with pytest.raises(ValueError, match=r"unknown graph setting\(s\) \['lookback'\]"):
        GraphConfig.from_dict({"lookback": 30})


def test_from_dict_not_a_mapping():
    with pytest.raises(ValueError, match="must be a mapping"):
        GraphConfig.from_dict([("min_count", 2)])


def test_numeric_settings_normalized():
    config = GraphConfig.from_dict(
        {"window_days": np.int64(30), "top_k": np.int64(5), "threads": 2.0}
    )

    assert config.window_days == 30.0
    assert isinstance(config.window_days, float)
    assert config.top_k == 5
    assert type(config.top_k) is int
    assert config.threads == 2
    assert type(config.threads) is int
    assert GraphConfig(window_days=MAX_WINDOW_DAYS).window_days == MAX_WINDOW_DAYS
    assert GraphConfig(max_distance=MAX_COUNT).max_distance == MAX_COUNT
    assert GraphConfig(temp_directory=Path("/tmp/graph")).temp_directory == "/tmp/graph"


@pytest.mark.parametrize(
    "window_days",
    [0, -1.5, MAX_WINDOW_DAYS + 1, 106_752, 1e7, math.inf, math.nan, True, "90"],
)
def test_invalid_window_days(window_days):
    with pytest.raises(ValueError, match=r"graph\.window_days=.* is invalid") as error:
        GraphConfig.from_dict({"window_days": window_days})

    assert f"at most {MAX_WINDOW_DAYS}" in str(error.value)
    assert "or null to keep all of history" in str(error.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"window_days": 0}, "window_days=0 is invalid"),
        ({"window_reference": "item"}, "window_reference='item' is invalid"),
        ({"untimed": "error"}, "untimed='error' is invalid"),
        ({"weight": "cosine"}, "weight='cosine' is invalid"),
        ({"top_k_mode": "any"}, "top_k_mode='any' is invalid"),
        ({"min_count": 0}, "min_count=0 is invalid"),
        ({"min_count": None}, "min_count=None is invalid"),
        ({"max_distance": 2.5}, "max_distance=2.5 is invalid"),
        ({"top_k": True}, "top_k=True is invalid"),
        ({"top_k": math.inf}, "top_k=inf is invalid"),
        ({"top_k": "50"}, "top_k='50' is invalid"),
        ({"max_distance": math.nan}, "max_distance=nan is invalid"),
        ({"max_distance": 2**63}, f"max_distance={2**63} is invalid.*to {MAX_COUNT}"),
        ({"min_count": False}, "min_count=False is invalid"),
        ({"min_count": 1e20}, "min_count=100000000000000000000 is invalid"),
        ({"max_items_per_user": 1}, "max_items_per_user=1 leaves no pairs"),
        ({"threads": -1}, "threads=-1 is invalid"),
        ({"threads": True}, "threads=True is invalid.*null for one per CPU core"),
        ({"strict": "yes"}, "strict='yes' must be true or false"),
        ({"memory_limit": "lots"}, "memory_limit='lots' is not a DuckDB size"),
        ({"memory_limit": 4}, "memory_limit=4 is not a DuckDB size"),
        ({"memory_limit": "0GB"}, "memory_limit='0GB' leaves DuckDB no memory"),
        ({"temp_directory": 5}, "temp_directory=5 is invalid"),
    ],
)
def test_invalid_values(settings, message):
    with pytest.raises(ValueError, match=message):
        GraphConfig.from_dict(settings)


def test_memory_limit_and_threads_reach_duckdb(random_tables, tmp_path):
    from gfm.graph import build_graph

    interactions, items = random_tables
    config = GraphConfig(
        window_days=None,
        memory_limit="256MiB",
        threads=1,
        temp_directory=str(tmp_path / "t"),
    )
    result = build_graph(interactions, items, None, config)

    assert result.stats["config"]["memory_limit"] == "256MiB"
    assert result.stats["duckdb"]["memory_limit"] == "256.0 MiB"
    assert result.stats["duckdb"]["threads"] == 1
    assert (tmp_path / "t").is_dir()
    assert list((tmp_path / "t").iterdir()) == []
