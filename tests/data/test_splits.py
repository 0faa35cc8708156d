"""Tests of gfm.data.splits: each protocol, leakage, cold items and storage."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gfm.data import Dataset, load_dataset
from gfm.data.splits import (
    Split,
    SplitConfig,
    cold_item_split,
    leave_last_n_split,
    random_split,
    split_dataset,
    temporal_split,
)
from gfm.data.validate import validate_dataset

KEY = ["user_id", "item_id", "timestamp", "event_type", "weight"]


def make_dataset(num_users: int = 20, days: int = 120, seed: int = 0) -> Dataset:
    """A dataset with one rating per user and day, plus untimed listens."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": [f"movie:{i}" for i in range(50)] +
                          [f"song:{i}" for i in range(30)],
                          "item_type": ["movie"] * 50 + ["song"] * 30,
                          "title": [f"t{i}" for i in range(80)]})
    start = pd.Timestamp("2020-01-01", tz="UTC")
    ratings = pd.DataFrame({
        "user_id": [f"u{u}" for u in range(num_users) for _ in range(days)],
        "item_id": [f"movie:{i}" for i in rng.integers(0, 50, num_users * days)],
        "timestamp": [start + pd.Timedelta(days=d, hours=u) for u in range(num_users)
                      for d in range(days)],
        "weight": 1.0,
        "event_type": "rating",
    })
    listens = pd.DataFrame({
        "user_id": [f"u{u}" for u in rng.integers(0, num_users, 400)],
        "item_id": [f"song:{i}" for i in rng.integers(0, 30, 400)],
        "weight": rng.integers(1, 100, 400).astype(float),
        "event_type": "listen",
    })
    items, interactions, _, report = validate_dataset(
        items, pd.concat([ratings, listens], ignore_index=True))
    return Dataset(name="toy", items=items, interactions=interactions, report=report)


def row_keys(frame: pd.DataFrame) -> set[tuple]:
    return set(frame[KEY].itertuples(index=False, name=None))


# Settings -----------------------------------------------------------------


def test_config_from_dict_defaults_and_values():
    config = SplitConfig.from_dict({"protocol": "random", "seed": 3})
    assert config.protocol == "random"
    assert config.seed == 3
    assert config.test_days == 14.0
    assert SplitConfig.from_dict(None) == SplitConfig()
    assert SplitConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"test_dayz": 3}, r"unknown split settings \['test_dayz'\]"),
        ({"protocol": "chrono"}, "unknown split protocol 'chrono'"),
        ({"protocols": {"tag": "chrono"}}, "for event type tag"),
        ({"test_days": 0}, "test_days must be > 0"),
        ({"window_days": -1}, "window_days must be > 0 or null"),
        ({"n_test": 0}, "n_test must be >= 1"),
        ({"test_fraction": 0.6, "valid_fraction": 0.5}, "leave rows for training"),
        ({"cold_item_fraction": 1.0}, r"cold_item_fraction must be in \[0, 1\)"),
    ],
)
def test_config_invalid_values_raise(values, message):
    with pytest.raises(ValueError, match=message):
        SplitConfig.from_dict(values)


# Protocols ----------------------------------------------------------------


def test_temporal_split_cutoffs():
    ratings = make_dataset().interactions.query("event_type == 'rating'")
    split = temporal_split(ratings, test_days=14, valid_days=7, window_days=30)

    end = ratings["timestamp"].max()
    test_start = end - pd.Timedelta(days=14)
    valid_start = test_start - pd.Timedelta(days=7)
    assert split.test["timestamp"].min() > test_start
    assert split.test["timestamp"].max() == end
    assert split.valid["timestamp"].min() > valid_start
    assert split.valid["timestamp"].max() <= test_start
    assert split.train["timestamp"].max() <= valid_start
    assert split.train["timestamp"].min() > valid_start - pd.Timedelta(days=30)
    dropped = split.report["dropped"]["outside_window"]
    assert dropped > 0
    assert len(split.train) + len(split.valid) + len(split.test) + dropped == len(ratings)
    assert split.report["cutoffs"]["test_start"] == test_start.isoformat()


def test_temporal_split_without_window_keeps_all():
    ratings = make_dataset().interactions.query("event_type == 'rating'")
    split = temporal_split(ratings, window_days=None)
    assert split.report["dropped"]["outside_window"] == 0
    assert sum(split.report["counts"].values()) == len(ratings)


def test_temporal_split_by_fraction_quantiles():
    ratings = make_dataset().interactions.query("event_type == 'rating'")
    split = temporal_split(ratings, window_days=None, test_fraction=0.2,
                           valid_fraction=0.1)

    counts = split.report["counts"]
    assert sum(counts.values()) == len(ratings)
    assert abs(counts["test"] - 0.2 * len(ratings)) <= 0.02 * len(ratings)
    assert abs(counts["valid"] - 0.1 * len(ratings)) <= 0.02 * len(ratings)
    assert split.train["timestamp"].max() <= split.valid["timestamp"].min()
    assert split.valid["timestamp"].max() <= split.test["timestamp"].min()
    assert split.report["settings"]["test_fraction"] == 0.2


def test_split_dataset_temporal_cutoff_fraction():
    dataset = make_dataset()
    config = SplitConfig(protocol="random", protocols={"rating": "temporal"},
                         temporal_cutoff="fraction", window_days=None,
                         test_fraction=0.25, valid_fraction=0.05)
    split = split_dataset(dataset, config)

    ratings = split.report["by_event_type"]["rating"]
    assert ratings["protocol"] == "temporal"
    assert ratings["settings"]["test_fraction"] == 0.25
    assert ratings["counts"]["test"] > 0


def test_config_rejects_unknown_temporal_cutoff():
    with pytest.raises(ValueError, match="temporal_cutoff 'weeks'"):
        SplitConfig(temporal_cutoff="weeks")


def test_temporal_split_needs_timestamps():
    interactions = make_dataset().interactions
    with pytest.raises(ValueError, match=r"400 of \d+ interactions have none"):
        temporal_split(interactions)


def test_leave_last_n_per_user():
    ratings = make_dataset(days=10).interactions.query("event_type == 'rating'")
    split = leave_last_n_split(ratings, n_test=2, n_valid=1)

    assert split.test.groupby("user_id").size().eq(2).all()
    assert split.valid.groupby("user_id").size().eq(1).all()
    last_train = split.train.groupby("user_id")["timestamp"].max()
    first_valid = split.valid.groupby("user_id")["timestamp"].min()
    first_test = split.test.groupby("user_id")["timestamp"].min()
    assert (last_train < first_valid).all()
    assert (first_valid.loc[first_test.index] < first_test).all()
    assert split.report["counts"] == {"train": 20 * 7, "valid": 20, "test": 40}


def test_leave_last_n_short_users_stay_in_train():
    interactions = pd.DataFrame({
        "user_id": ["a", "a", "b", "b", "b"],
        "item_id": ["x", "y", "x", "y", "z"],
        "timestamp": pd.to_datetime([1, 2, 1, 2, 3], unit="D", utc=True),
        "weight": 1.0, "event_type": "rating"})
    split = leave_last_n_split(interactions, n_test=1, n_valid=1)

    assert split.train["user_id"].tolist() == ["a", "a", "b"]
    assert split.valid["item_id"].tolist() == ["y"]
    assert split.test["item_id"].tolist() == ["z"]
    assert split.report["users_kept_in_train"] == 1


def test_random_split_seeded_and_sized():
    listens = make_dataset().interactions.query("event_type == 'listen'")
    first = random_split(listens, test_fraction=0.2, valid_fraction=0.1, seed=7)
    again = random_split(listens, test_fraction=0.2, valid_fraction=0.1, seed=7)
    other = random_split(listens, test_fraction=0.2, valid_fraction=0.1, seed=8)

    assert first.report["counts"] == {"train": 280, "valid": 40, "test": 80}
    pd.testing.assert_frame_equal(first.test, again.test)
    assert not first.test.equals(other.test)


# split_dataset ------------------------------------------------------------


def test_split_dataset_protocol_per_event_type():
    dataset = make_dataset()
    split = split_dataset(dataset, {"window_days": None})

    assert split.report["protocols"] == {"listen": "random", "rating": "temporal"}
    assert set(split.test["event_type"]) == {"listen", "rating"}
    counts = split.report["counts"]
    total = sum(part["interactions"] for part in counts.values())
    assert total == len(dataset.interactions)
    assert split.report["by_event_type"]["rating"]["protocol"] == "temporal"


def test_split_dataset_explicit_protocols():
    split = split_dataset(make_dataset(), {"protocols": {"rating": "leave_last_n"},
                                           "protocol": "random"})
    assert split.report["protocols"] == {"listen": "random", "rating": "leave_last_n"}
    assert (split.test.query("event_type == 'rating'").groupby("user_id").size() == 1).all()


def test_split_dataset_no_test_leak_into_train():
    dataset = make_dataset()
    for protocol in ("auto", "leave_last_n", "random"):
        config = {"protocol": protocol, "protocols": {"listen": "random"}}
        split = split_dataset(dataset, config)
        train, valid, test = (row_keys(split.train), row_keys(split.valid),
                              row_keys(split.test))
        assert not train & test, protocol
        assert not valid & test, protocol
        assert not train & valid, protocol


def test_split_dataset_cold_items_unseen():
    dataset = make_dataset()
    split = split_dataset(dataset, {"cold_item_fraction": 0.2, "cold_item_types": ["movie"],
                                    "window_days": None, "seed": 5})

    cold = set(split.cold_items)
    assert len(cold) == 10
    assert all(item.startswith("movie:") for item in cold)
    assert not cold & set(split.train["item_id"])
    assert not cold & set(split.valid["item_id"])
    assert split.report["cold_items"]["test_interactions"] == int(
        split.test["item_id"].isin(cold).sum())
    removed = split.report["dropped"]["cold_item_train"]
    assert removed == split.report["cold_items"]["removed_interactions"]["train"]
    assert removed > 0
    again = split_dataset(dataset, {"cold_item_fraction": 0.2, "cold_item_types": ["movie"],
                                    "window_days": None, "seed": 5})
    assert again.cold_items == split.cold_items


def test_cold_item_split_zero_fraction_is_identity():
    dataset = make_dataset()
    base = split_dataset(dataset, {"window_days": None})
    same = cold_item_split(base, dataset.items, fraction=0.0)
    assert same.cold_items == []
    pd.testing.assert_frame_equal(same.train, base.train)


def test_split_round_trip_local_and_gcs(tmp_path: Path, gcs_emulator):
    split = split_dataset(make_dataset(), {"cold_item_fraction": 0.1})
    bucket = gcs_emulator.create_bucket("data-tests")
    for uri in (str(tmp_path / "split"), f"{bucket}/{uuid.uuid4().hex}/split"):
        split.save(uri)
        loaded = Split.load(uri)
        for part in ("train", "valid", "test"):
            pd.testing.assert_frame_equal(getattr(loaded, part), getattr(split, part))
        assert loaded.cold_items == split.cold_items
        assert loaded.report == split.report
    names = sorted(p.name for p in (tmp_path / "split").iterdir())
    assert names == ["cold_items.parquet", "split.json", "test.parquet",
                     "train.parquet", "valid.parquet"]


# Real data ----------------------------------------------------------------


def test_lastfm_split_protocols_and_leakage(data_dir: Path):
    dataset = load_dataset("lastfm-2k", data_dir)
    split = split_dataset(dataset, {"window_days": None, "test_days": 60,
                                    "valid_days": 30, "cold_item_fraction": 0.05})

    assert split.report["protocols"] == {"listen": "random", "tag": "temporal"}
    assert not row_keys(split.train) & row_keys(split.test)
    tags_train = split.train.query("event_type == 'tag'")["timestamp"]
    tags_test = split.test.query("event_type == 'tag'")["timestamp"]
    assert tags_train.max() < tags_test.min()
    cold = set(split.cold_items)
    assert not cold & set(split.train["item_id"])
    assert not cold & set(split.valid["item_id"])
    total = sum(part["interactions"] for part in split.report["counts"].values())
    assert total + sum(split.report["dropped"].values()) == len(dataset.interactions)
