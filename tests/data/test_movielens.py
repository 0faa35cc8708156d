"""Tests of the MovieLens 1M loader on the real files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gfm.data import Dataset, load_dataset
from gfm.data.movielens import decode_text, read_double_colon


@pytest.fixture(scope="module")
def movielens(data_dir: Path) -> Dataset:
    return load_dataset("movielens-1m", data_dir)


def test_counts_match_publisher(movielens: Dataset):
    assert len(movielens.interactions) == 1_000_209
    assert movielens.interactions["user_id"].nunique() == 6_040
    assert movielens.interactions["item_id"].nunique() == 3_706
    assert len(movielens.items) == 3_883
    assert len(movielens.users) == 6_040
    assert movielens.item_types == ["movie"]
    assert movielens.name == "movielens-1m"


def test_report_has_counts_and_no_drops(movielens: Dataset):
    report = movielens.report
    assert report["rows_out"] == {"items": 3_883, "interactions": 1_000_209,
                                  "users": 6_040}
    assert report["dropped"] == {"interactions": {"unknown_item": 0}}
    assert report["counts"]["items_with_interactions"] == 3_706
    assert report["source"]["movies_without_year"] == 0


def test_first_rating_parsed(movielens: Dataset):
    first = movielens.interactions.iloc[0]
    assert first["user_id"] == "1"
    assert first["item_id"] == "movie:1193"
    assert first["weight"] == 5.0
    assert first["event_type"] == "rating"
    assert first["timestamp"] == pd.Timestamp(978300760, unit="s", tz="UTC")
    assert movielens.interactions["weight"].between(1, 5).all()


def test_titles_years_and_genres(movielens: Dataset):
    items = movielens.items.set_index("item_id")
    toy_story = items.loc["movie:1"]
    assert toy_story["title"] == "Toy Story"
    assert toy_story["release_year"] == 1995
    assert toy_story["genres"] == ["Animation", "Children's", "Comedy"]
    # A bracket inside the title stays; only the trailing year goes.
    assert items.loc["movie:47", "title"] == "Seven (Se7en)"
    assert not items["title"].str.contains(r"\(\d{4}\)$").any()


def test_accented_titles_decoded(movielens: Dataset):
    titles = set(movielens.items["title"])
    assert any("é" in title for title in titles)
    assert not any("\ufffd" in title or "Ã" in title for title in titles)


def test_users_categorical_strings(movielens: Dataset):
    users = movielens.users
    assert list(users.columns) == ["user_id", "gender", "age", "occupation"]
    first = users.iloc[0]
    assert (first["user_id"], first["gender"], first["age"], first["occupation"]) == (
        "1", "F", "1", "10")
    assert set(users["gender"]) == {"F", "M"}


def test_decode_text_accepts_both_encodings():
    text = "Amélie (2001)"
    assert decode_text(text.encode("utf-8")) == text
    assert decode_text(text.encode("iso-8859-1")) == text


def test_read_double_colon_keeps_quotes():
    data = '1::"Quoted" Title (1999)::Drama\n'.encode("iso-8859-1")
    frame = read_double_colon(data, ["id", "title", "genres"], {"id": str})
    assert frame.loc[0, "title"] == '"Quoted" Title (1999)'
    assert frame.loc[0, "genres"] == "Drama"
