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


def test_artist_tags_left_for_split(lastfm: Dataset):
    artists = lastfm.items[lastfm.items["item_type"] == "artist"]
    tag_rows = lastfm.interactions[lastfm.interactions["event_type"] == "tag"]
    applications = lastfm.tag_applications

    assert artists["tags"].isna().all()
    assert len(applications) == 186_479 - 5
    assert applications["tagged_item_id"].str.startswith("artist:").all()
    assert lastfm.report["source"]["artist_top_tags"] == 10
    keys = ["user_id", "item_id", "timestamp"]
    pd.testing.assert_frame_equal(
        applications[keys].sort_values(keys, ignore_index=True),
        tag_rows[keys].sort_values(keys, ignore_index=True))


@pytest.fixture(scope="module")
def lastfm_split(lastfm: Dataset):
    from gfm.data.splits import split_dataset
    from gfm.pipelines.run_config import load_run_config

    return split_dataset(lastfm, load_run_config("lastfm-2k").split)


def _raw_applications(data_dir: Path) -> pd.DataFrame:
    raw = pd.read_csv(data_dir / "lastfm-2k" / "user_taggedartists.dat", sep="\t",
                      dtype=str)
    parts = raw[["year", "month", "day"]].apply(pd.to_numeric)
    raw["date"] = pd.to_datetime(parts, errors="coerce", utc=True)
    return raw


def test_test_period_tags_never_in_artist_text(lastfm: Dataset, lastfm_split,
                                                data_dir: Path):
    from gfm.data.item_text import items_for_split

    items, report = items_for_split(lastfm, lastfm_split)
    cutoffs = lastfm_split.report["by_event_type"]["tag"]["cutoffs"]
    valid_start = pd.Timestamp(cutoffs["valid_start"])
    raw = _raw_applications(data_dir)
    titles = items.set_index("item_id")["title"]
    raw["pair"] = "artist:" + raw["artistID"] + "|" + raw["tagID"].map(
        lambda tag: titles.get(f"tag:{tag}"))
    before = set(raw.loc[raw["date"] <= valid_start, "pair"])
    after_only = set(raw.loc[raw["date"] > valid_start, "pair"]) - before
    texts = items.loc[items["item_type"] == "artist"].dropna(subset=["tags"])
    pairs = {f"{item}|{tag}" for item, tags in zip(texts["item_id"], texts["tags"])
             for tag in tags}

    # Thousands of (artist, tag) pairs are applied only in the validation or
    # test period, and none of them may reach an artist's text.
    assert len(after_only) > 1000
    assert not pairs & after_only
    assert pairs <= before
    listed = ("artist:" + raw["artistID"]).isin(items["item_id"])
    assert report["in_valid_or_test"] == int(((raw["date"] > valid_start) & listed).sum())
    assert report["used"] + report["in_valid_or_test"] + report["not_in_split"] \
        + report["on_unknown_items"] == len(lastfm.tag_applications)


def test_artist_text_most_frequent_first(lastfm: Dataset, lastfm_split, data_dir: Path):
    from gfm.data.item_text import items_for_split

    items, _ = items_for_split(lastfm, lastfm_split)
    valid_start = pd.Timestamp(
        lastfm_split.report["by_event_type"]["tag"]["cutoffs"]["valid_start"])
    raw = _raw_applications(data_dir)
    train = raw[raw["date"] <= valid_start]
    busiest = train["artistID"].value_counts().index[0]
    top_tag = train.loc[train["artistID"] == busiest, "tagID"].value_counts()
    tags = items.set_index("item_id").loc[f"artist:{busiest}", "tags"]
    texts = items.set_index("item_id")["title"]

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
