"""GraphConfig defaults, from_dict and validation."""

from __future__ import annotations

import pytest

from gfm.graph import GraphConfig


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


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"window_days": 0}, "window_days=0 must be positive"),
        ({"window_reference": "item"}, "window_reference='item' is invalid"),
        ({"untimed": "error"}, "untimed='error' is invalid"),
        ({"weight": "cosine"}, "weight='cosine' is invalid"),
        ({"top_k_mode": "any"}, "top_k_mode='any' is invalid"),
        ({"min_count": 0}, "min_count=0 is invalid"),
        ({"min_count": None}, "min_count=None is invalid"),
        ({"max_distance": 2.5}, "max_distance=2.5 is invalid"),
        ({"top_k": True}, "top_k=True is invalid"),
        ({"max_items_per_user": 1}, "max_items_per_user=1 leaves no pairs"),
        ({"threads": -1}, "threads=-1 is invalid"),
        ({"strict": "yes"}, "strict='yes' must be true or false"),
        ({"memory_limit": "lots"}, "memory_limit='lots' is not a DuckDB size"),
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
