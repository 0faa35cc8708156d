"""Tests of gfm.data.dataset.Dataset: folder layout and round trips."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from gfm import storage
from gfm.data import Dataset
from gfm.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA
from gfm.data.validate import validate_dataset


def make_dataset(with_users: bool = True) -> Dataset:
    items = pd.DataFrame({
        "item_id": ["movie:1", "movie:2", "tag:1"],
        "item_type": ["movie", "movie", "tag"],
        "title": ["Heat", "Amélie", "noir"],
        "genres": [["Crime", "Drama"], [], None],
        "release_year": [1995, 2001, None],
    })
    interactions = pd.DataFrame({
        "user_id": ["u1", "u2", "u2"],
        "item_id": ["movie:1", "movie:2", "tag:1"],
        "timestamp": ["2003-01-01T10:00:00Z", None, "2003-01-02T00:00:00Z"],
        "weight": [5, 2, 1],
        "event_type": ["rating", "rating", "tag"],
    })
    users = pd.DataFrame({"user_id": ["u1", "u2"], "gender": ["F", "M"]})
    items, interactions, users, report = validate_dataset(
        items, interactions, users if with_users else None)
    return Dataset(name="tiny", items=items, interactions=interactions, users=users,
                   report=report)


def assert_same(loaded: Dataset, original: Dataset) -> None:
    assert loaded.name == original.name
    pd.testing.assert_frame_equal(loaded.items, original.items)
    pd.testing.assert_frame_equal(loaded.interactions, original.interactions)
    if original.users is None:
        assert loaded.users is None
    else:
        pd.testing.assert_frame_equal(loaded.users, original.users)
    assert loaded.report == original.report


def test_item_types_sorted_distinct():
    assert make_dataset().item_types == ["movie", "tag"]


def test_save_writes_layout(tmp_path: Path):
    dataset = make_dataset()
    dataset.save(tmp_path / "ds")

    names = sorted(p.name for p in (tmp_path / "ds").iterdir())
    assert names == ["interactions.parquet", "items.parquet", "report.json",
                     "users.parquet"]
    assert pq.read_schema(tmp_path / "ds" / "items.parquet").equals(ITEMS_SCHEMA)
    assert pq.read_schema(tmp_path / "ds" / "interactions.parquet").equals(
        INTERACTIONS_SCHEMA)
    assert storage.read_json(tmp_path / "ds" / "report.json")["name"] == "tiny"


def test_local_round_trip(tmp_path: Path):
    dataset = make_dataset()
    dataset.save(tmp_path / "ds")
    loaded = Dataset.load(tmp_path / "ds")

    assert_same(loaded, dataset)
    assert loaded.items["genres"].tolist() == [["Crime", "Drama"], [], None]
    assert loaded.interactions["timestamp"].isna().tolist() == [False, True, False]


def test_gcs_round_trip(gcs_emulator):
    bucket = gcs_emulator.create_bucket("data-tests")
    uri = f"{bucket}/{uuid.uuid4().hex}/dataset"
    dataset = make_dataset()

    dataset.save(uri)
    loaded = Dataset.load(uri)

    assert_same(loaded, dataset)


def test_save_without_users_removes_stale_file(tmp_path: Path):
    make_dataset(with_users=True).save(tmp_path / "ds")
    without = make_dataset(with_users=False)
    without.save(tmp_path / "ds")

    assert not (tmp_path / "ds" / "users.parquet").exists()
    assert Dataset.load(tmp_path / "ds").users is None
