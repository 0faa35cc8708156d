"""Tests of the Last.fm-2k loader on the real files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gfm.data import Dataset, load_dataset
from gfm.data.validate import DataValidationError


@pytest.fixture(scope="module")
def lastfm(data_dir: Path) -> Dataset:
    return load_dataset("lastfm-2k", data_dir)


def test_listen_counts_match_publisher(lastfm: Dataset):
    listens = lastfm.interactions[lastfm.interactions["event_type"] == "listen"]
    assert len(listens) == 92_834
    assert listens["user_id"].nunique() == 1_892
    assert listens["item_id"].nunique() == 17_632
    assert listens["timestamp"].isna().all()
    assert listens["item_id"].str.startswith("artist:").all()


def test_tag_applications_counted(lastfm: Dataset):
    tags = lastfm.interactions[lastfm.interactions["event_type"] == "tag"]
    dropped = lastfm.report["dropped"]["interactions"]
    assert lastfm.report["source"]["tag_applications_read"] == 186_479
    assert dropped["tag_date_out_of_range"] == 5
    assert dropped["invalid_tag_date"] == 0
    assert len(tags) == 186_479 - 5
    assert tags["timestamp"].notna().all()
    assert tags["timestamp"].min() >= pd.Timestamp("2005-01-01", tz="UTC")
    assert (tags["weight"] == 1.0).all()


def test_report_rows_balance(lastfm: Dataset):
    report = lastfm.report
    dropped = sum(report["dropped"]["interactions"].values())
    assert report["rows_in"]["interactions"] == 92_834 + 186_479
    assert report["rows_in"]["interactions"] - dropped == report["rows_out"][
        "interactions"]
    assert report["counts"]["items_by_type"] == {"artist": 17_632, "tag": 11_946}


def test_items_of_both_types(lastfm: Dataset):
    items = lastfm.items.set_index("item_id")
    assert lastfm.item_types == ["artist", "tag"]
    assert items.loc["artist:1", "title"] == "MALICE MIZER"
    assert items.loc["tag:1", "title"] == "metal"
    assert items.loc["tag:1", "item_type"] == "tag"
    assert lastfm.users is None


def test_artist_tags_most_frequent_first(lastfm: Dataset, data_dir: Path):
    raw = pd.read_csv(data_dir / "lastfm-2k" / "user_taggedartists.dat", sep="\t",
                      dtype=str)
    busiest = raw["artistID"].value_counts().index[0]
    top_tag = raw.loc[raw["artistID"] == busiest, "tagID"].value_counts()
    tags = lastfm.items.set_index("item_id").loc[f"artist:{busiest}", "tags"]
    texts = lastfm.items.set_index("item_id")["title"]

    assert len(tags) == 10
    assert tags[0] == texts[f"tag:{top_tag.index[0]}"]


def test_latin1_tag_text_decoded(lastfm: Dataset):
    titles = lastfm.items.loc[lastfm.items["item_type"] == "tag", "title"]
    assert "rock français" in set(titles)
    assert "fußball" in set(titles)
    assert not titles.str.contains("\ufffd").any()


def test_strict_rejects_bogus_dates(data_dir: Path):
    with pytest.raises(DataValidationError, match=r"5 tag applications .*1956"):
        load_dataset("lastfm-2k", data_dir, strict=True)


def test_wider_window_keeps_old_dates(data_dir: Path):
    dataset = load_dataset("lastfm-2k", data_dir, tag_min_date="1950-01-01")
    assert dataset.report["dropped"]["interactions"]["tag_date_out_of_range"] == 0
    assert (dataset.interactions["event_type"] == "tag").sum() == 186_479


def test_invalid_options_raise(data_dir: Path):
    with pytest.raises(ValueError, match="tag_min_date 2011-01-01 is after"):
        load_dataset("lastfm-2k", data_dir, tag_min_date="2011-01-01",
                     tag_max_date="2010-01-01")
    with pytest.raises(ValueError, match=r"unknown options \['colour'\]"):
        load_dataset("lastfm-2k", data_dir, colour="red")
