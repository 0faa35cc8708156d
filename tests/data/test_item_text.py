"""Tests of item tag text built from the training split."""

from __future__ import annotations

import pandas as pd
import pytest

from gfm.data import Dataset
from gfm.data.item_text import items_for_split
from gfm.data.splits import random_split, split_dataset
from gfm.data.validate import validate_dataset

JANUARY = pd.Timestamp("2011-01-01", tz="UTC")
MARCH = pd.Timestamp("2011-03-01", tz="UTC")
MAY = pd.Timestamp("2011-05-01", tz="UTC")
# (user, tag, date, artist): rock and pop before the cutoffs, jazz only in
# the test period, and one application on an artist missing from the items.
APPLICATIONS = [
    ("u1", "tag:rock", JANUARY, "artist:a"),
    ("u2", "tag:rock", JANUARY, "artist:a"),
    ("u1", "tag:pop", JANUARY, "artist:a"),
    ("u2", "tag:pop", JANUARY, "artist:b"),
    ("u3", "tag:jazz", MAY, "artist:a"),
    ("u3", "tag:jazz", MAY, "artist:c"),
    ("u1", "tag:rock", JANUARY, "artist:gone"),
]


def _dataset() -> Dataset:
    items = pd.DataFrame({
        "item_id": ["artist:a", "artist:b", "artist:c", "tag:rock", "tag:pop", "tag:jazz"],
        "item_type": ["artist"] * 3 + ["tag"] * 3,
        "title": ["A", "B", "C", "rock", "pop", "jazz"],
        "tags": [None] * 6,
    })
    applications = pd.DataFrame(APPLICATIONS, columns=["user_id", "item_id", "timestamp",
                                                       "tagged_item_id"])
    interactions = applications[["user_id", "item_id", "timestamp"]].assign(
        weight=1.0, event_type="tag")
    # A valid-period row keeps the validation part non-empty.
    valid_row = pd.DataFrame({"user_id": ["u2"], "item_id": ["tag:pop"], "timestamp": [MARCH],
                              "weight": [1.0], "event_type": ["tag"]})
    interactions = pd.concat([interactions, valid_row], ignore_index=True)
    return Dataset(name="tiny-tags", items=items, interactions=interactions,
                   report={"source": {"artist_top_tags": 10}},
                   tag_applications=applications)


def _temporal_split(dataset: Dataset):
    return split_dataset(dataset, {"protocol": "temporal", "test_days": 30,
                                   "valid_days": 70, "window_days": None})


def test_test_period_tag_not_in_text():
    dataset = _dataset()
    items, _ = items_for_split(dataset, _temporal_split(dataset))
    tags = items.set_index("item_id")["tags"]

    assert tags["artist:a"] == ["rock", "pop"]
    assert tags["artist:b"] == ["pop"]
    assert tags["artist:c"] is None
    assert all(tags[item] is None for item in ("tag:rock", "tag:pop", "tag:jazz"))


def test_item_text_counts_applications():
    dataset = _dataset()
    _, report = items_for_split(dataset, _temporal_split(dataset))

    assert report == {"tag_applications": 7, "used": 4, "in_valid_or_test": 2,
                      "not_in_split": 0, "on_unknown_items": 1, "items_with_tags": 2}


def test_item_text_top_tags_limit():
    dataset = _dataset()
    items, _ = items_for_split(dataset, _temporal_split(dataset), top_tags=1)

    assert items.set_index("item_id").loc["artist:a", "tags"] == ["rock"]
    with pytest.raises(ValueError, match="top_tags must be >= 0"):
        items_for_split(dataset, _temporal_split(dataset), top_tags=-1)


def test_item_text_ambiguous_keys_left_out():
    # A random split can put one (u1, tag:rock, January) row in train and the
    # other in test. Which artist each row tagged is unknown, so neither counts.
    dataset = _dataset()
    dataset.interactions = dataset.interactions.iloc[[0, 6]].reset_index(drop=True)
    split = random_split(dataset.interactions, test_fraction=0.5, valid_fraction=0.0,
                         seed=0)
    items, report = items_for_split(dataset, split)

    assert len(split.train) == 1
    assert len(split.test) == 1
    assert report["in_valid_or_test"] == 1
    assert report["used"] == 0
    assert items.set_index("item_id").loc["artist:a", "tags"] is None


def test_item_text_without_applications_unchanged():
    dataset = _dataset()
    dataset.tag_applications = None
    items, report = items_for_split(dataset, _temporal_split(dataset))

    pd.testing.assert_frame_equal(items, dataset.items)
    assert report == {}


def test_tag_applications_saved_and_loaded(tmp_path):
    dataset = _dataset()
    split = _temporal_split(dataset)
    items, interactions, _, report = validate_dataset(dataset.items, dataset.interactions)
    stored = Dataset(name="tiny-tags", items=items, interactions=interactions,
                     report=dict(report, source={"artist_top_tags": 10}),
                     tag_applications=dataset.tag_applications)
    stored.save(tmp_path / "dataset")
    loaded = Dataset.load(tmp_path / "dataset")
    stored.tag_applications = None
    stored.save(tmp_path / "dataset")

    assert loaded.tag_applications["tagged_item_id"].tolist() == [
        row[3] for row in APPLICATIONS]
    assert items_for_split(loaded, split)[1]["used"] == 4
    assert Dataset.load(tmp_path / "dataset").tag_applications is None
