"""Tests of the generic "files" loader for contract tables in CSV or Parquet."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest

from gfm import storage
from gfm.data import Dataset, load_dataset
from gfm.data.validate import DataValidationError

ITEMS_CSV = """item_id,item_type,title,genres,release_year
book:007,book,Dr. No,spy|thriller,1958
book:2,book,"Emma, a novel",,1815
pod:1,podcast,Daily,,
"""
INTERACTIONS_CSV = """user_id,item_id,timestamp,weight,event_type
0042,book:007,2020-01-01T00:00:00Z,1,read
0042,pod:1,2020-01-02T00:00:00Z,2.5,listen
7,book:2,,1,read
7,book:404,2020-01-03T00:00:00Z,1,read
"""


def write_csv_tables(folder: str) -> None:
    storage.write_text(storage.join(folder, "items.csv"), ITEMS_CSV)
    storage.write_text(storage.join(folder, "interactions.csv"), INTERACTIONS_CSV)


def test_csv_tables_loaded(tmp_path: Path):
    write_csv_tables(str(tmp_path / "shop"))
    dataset = load_dataset("files", path=str(tmp_path / "shop"))

    items = dataset.items.set_index("item_id")
    assert dataset.name == "shop"
    assert dataset.item_types == ["book", "podcast"]
    assert items.loc["book:007", "genres"] == ["spy", "thriller"]
    assert items.loc["book:2", "genres"] is None
    assert items.loc["book:2", "title"] == "Emma, a novel"
    assert pd.isna(items.loc["pod:1", "release_year"])
    # Ids keep leading zeros because CSV ids are read as text.
    assert dataset.interactions["user_id"].tolist() == ["0042", "0042", "7"]
    assert dataset.interactions["timestamp"].isna().tolist() == [False, False, True]
    assert dataset.report["dropped"]["interactions"]["unknown_item"] == 1


def test_csv_unix_seconds_parsed(tmp_path: Path):
    folder = tmp_path / "t"
    storage.write_text(folder / "items.csv", ITEMS_CSV)
    storage.write_text(folder / "interactions.csv",
                       "user_id,item_id,timestamp,weight,event_type\n"
                       "1,book:2,1577836800,1,read\n")
    dataset = load_dataset("files", path=str(folder))
    assert dataset.interactions.loc[0, "timestamp"] == pd.Timestamp("2020-01-01", tz="UTC")


def test_parquet_round_trip_through_gcs(gcs_emulator, tmp_path: Path):
    write_csv_tables(str(tmp_path / "csv"))
    original = load_dataset("files", path=str(tmp_path / "csv"))
    bucket = gcs_emulator.create_bucket("data-tests")
    uri = f"{bucket}/{uuid.uuid4().hex}/tables"
    original.save(uri)

    loaded = load_dataset("files", path=uri, dataset_name="copy")

    assert isinstance(loaded, Dataset)
    assert loaded.name == "copy"
    pd.testing.assert_frame_equal(loaded.items, original.items)
    pd.testing.assert_frame_equal(loaded.interactions, original.interactions)


def test_strict_rejects_unknown_items(tmp_path: Path):
    write_csv_tables(str(tmp_path / "shop"))
    with pytest.raises(DataValidationError, match="book:404"):
        load_dataset("files", path=str(tmp_path / "shop"), strict=True)


def test_missing_and_ambiguous_tables(tmp_path: Path):
    folder = tmp_path / "partial"
    storage.write_text(folder / "items.csv", ITEMS_CSV)
    with pytest.raises(FileNotFoundError, match="interactions table not found"):
        load_dataset("files", path=str(folder))

    storage.write_text(folder / "interactions.csv", INTERACTIONS_CSV)
    storage.write_text(folder / "items.parquet", "not used")
    with pytest.raises(ValueError, match="keep one of them"):
        load_dataset("files", path=str(folder))


def test_files_needs_path_and_known_names():
    with pytest.raises(ValueError, match="needs the path option"):
        load_dataset("files")
    with pytest.raises(ValueError, match=r"unknown dataset 'imdb'; expected one of"):
        load_dataset("imdb")
