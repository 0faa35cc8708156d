"""Tests of gfm.data.validate: normalization, errors and the report."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from gfm.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, frame_to_table
from gfm.data.validate import DataValidationError, record_drop, validate_dataset


def make_items(**overrides) -> pd.DataFrame:
    columns = {
        "item_id": ["movie:1", "movie:2", "tag:1"],
        "item_type": ["movie", "movie", "tag"],
        "title": ["Heat", "Alien", "noir"],
        "genres": [["Crime"], None, None],
        "release_year": [1995, 1979, None],
    }
    columns.update(overrides)
    return pd.DataFrame(columns)


def make_interactions(**overrides) -> pd.DataFrame:
    columns = {
        "user_id": ["u1", "u1", "u2", "u3"],
        "item_id": ["movie:1", "tag:1", "movie:2", "movie:1"],
        "timestamp": pd.to_datetime(["2003-01-01", "2003-01-02", "2003-01-03",
                                     "2003-01-04"], utc=True),
        "weight": [5.0, 1.0, 3.0, 4.0],
        "event_type": ["rating", "tag", "rating", "rating"],
    }
    columns.update(overrides)
    return pd.DataFrame(columns)


# Normalization ------------------------------------------------------------


def test_valid_tables_normalized():
    items, interactions, users, _ = validate_dataset(make_items(), make_interactions())

    assert list(items.columns) == ITEMS_SCHEMA.names
    assert list(interactions.columns) == INTERACTIONS_SCHEMA.names
    assert users is None
    assert str(items["release_year"].dtype) == "Int32"
    assert items["release_year"].isna().tolist() == [False, False, True]
    assert items["genres"].tolist() == [["Crime"], None, None]
    assert str(interactions["timestamp"].dtype) == "datetime64[us, UTC]"
    assert interactions["weight"].dtype == np.float32
    # The result converts to Arrow without further work.
    assert frame_to_table(items, "items").schema.equals(ITEMS_SCHEMA)
    assert frame_to_table(interactions, "interactions").schema.equals(
        INTERACTIONS_SCHEMA)


def test_report_counts_and_rows():
    _, _, _, report = validate_dataset(make_items(), make_interactions())

    assert report["rows_in"] == {"items": 3, "interactions": 4}
    assert report["rows_out"] == {"items": 3, "interactions": 4}
    assert report["dropped"] == {"interactions": {"unknown_item": 0}}
    assert report["filled_columns"] == {
        "items": ["description", "tags", "creators", "language"]}
    counts = report["counts"]
    assert counts["items_by_type"] == {"movie": 2, "tag": 1}
    assert counts["interactions_by_event_type"] == {"rating": 3, "tag": 1}
    assert counts["interactions_by_item_type"] == {"movie": 3, "tag": 1}
    assert counts["users_in_interactions"] == 3
    assert counts["timestamp_min"] == "2003-01-01T00:00:00+00:00"


def test_timestamp_forms_all_parse():
    expected = pd.Timestamp("2003-01-31 12:00:00", tz="UTC")
    seconds = int(expected.timestamp())
    forms = {
        "unix seconds": [seconds] * 4,
        "iso text": ["2003-01-31T12:00:00Z"] * 4,
        "offset text": ["2003-01-31T13:00:00+01:00"] * 4,
        "naive datetime": pd.to_datetime(["2003-01-31 12:00:00"] * 4),
        "other zone": pd.to_datetime(["2003-01-31 07:00:00"] * 4).tz_localize(
            "America/New_York"),
        "python datetimes": [dt.datetime(2003, 1, 31, 12, tzinfo=dt.UTC)] * 4,
    }
    for form, values in forms.items():
        _, interactions, _, _ = validate_dataset(make_items(),
                                                 make_interactions(timestamp=values))
        assert (interactions["timestamp"] == expected).all(), form


def test_missing_timestamp_column_filled_null():
    frame = make_interactions().drop(columns="timestamp")
    _, interactions, _, report = validate_dataset(make_items(), frame)

    assert interactions["timestamp"].isna().all()
    assert str(interactions["timestamp"].dtype) == "datetime64[us, UTC]"
    assert report["filled_columns"]["interactions"] == ["timestamp"]
    assert report["counts"]["timestamp_min"] is None


def test_categorical_and_string_dtypes_accepted():
    frame = make_interactions()
    frame["user_id"] = frame["user_id"].astype("category")
    frame["event_type"] = frame["event_type"].astype("string")
    _, interactions, _, _ = validate_dataset(make_items(), frame)

    assert interactions["user_id"].dtype == object
    assert interactions["event_type"].tolist() == ["rating", "tag", "rating", "rating"]


def test_input_frames_not_modified():
    items, interactions = make_items(), make_interactions()
    before = interactions.copy()
    validate_dataset(items, interactions)

    assert list(items.columns) == ["item_id", "item_type", "title", "genres",
                                   "release_year"]
    pd.testing.assert_frame_equal(interactions, before)


# Drops by policy ----------------------------------------------------------


def test_unknown_items_dropped_and_counted():
    frame = make_interactions(item_id=["movie:1", "movie:9", "movie:9", "tag:7"])
    _, interactions, _, report = validate_dataset(make_items(), frame)

    assert interactions["item_id"].tolist() == ["movie:1"]
    assert report["dropped"]["interactions"]["unknown_item"] == 3
    assert report["rows_out"]["interactions"] == 1
    assert interactions.index.tolist() == [0]


def test_unknown_items_strict_raises():
    frame = make_interactions(item_id=["movie:1", "movie:9", "movie:9", "tag:7"])
    with pytest.raises(DataValidationError, match=r"3 rows .*'movie:9', 'tag:7'"):
        validate_dataset(make_items(), frame, strict=True)


def test_extra_columns_dropped_or_rejected():
    items = make_items(popularity=[1, 2, 3])
    checked, _, _, report = validate_dataset(items, make_interactions())
    assert "popularity" not in checked.columns
    assert report["dropped_columns"] == {"items": ["popularity"]}

    with pytest.raises(DataValidationError, match=r"outside its schema \['popularity'\]"):
        validate_dataset(items, make_interactions(), strict=True)


def test_record_drop_accumulates():
    report: dict = {}
    record_drop(report, "interactions", "bogus_date", 2)
    record_drop(report, "interactions", "bogus_date", 3)
    assert report == {"dropped": {"interactions": {"bogus_date": 5}}}


# Errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "interactions", "message"),
    [
        (make_items().iloc[:0], make_interactions(), "items table is empty"),
        (make_items(), make_interactions().iloc[:0], "interactions table is empty"),
        (make_items().drop(columns="title"), make_interactions(),
         r"items table lacks required columns \['title'\]"),
        (make_items(), make_interactions().drop(columns="weight"),
         r"interactions table lacks required columns \['weight'\]"),
        (make_items(item_id=["movie:1", "movie:1", "tag:1"]), make_interactions(),
         r"items.item_id must be unique.*'movie:1'"),
        (make_items(item_id=[1, 2, 3]), make_interactions(),
         r"items.item_id must be strings, but row 0 is int 1"),
        (make_items(title=["Heat", None, "noir"]), make_interactions(),
         r"items.title is required but null in 1 rows \(first row 1\)"),
        (make_items(genres=["Crime", None, None]), make_interactions(),
         r"items.genres must hold lists of strings or null, found str 'Crime'"),
        (make_items(release_year=["1995", "soon", None]), make_interactions(),
         r"items.release_year must be integers, but row 1 is 'soon'"),
        (make_items(release_year=[1995.5, None, None]), make_interactions(),
         r"items.release_year must be integers, but row 0 is 1995.5"),
        (make_items(), make_interactions(weight=[1.0, -2.0, 3.0, 4.0]),
         r"interactions.weight has 1 negative values, first -2.0 in row 1"),
        (make_items(), make_interactions(weight=[1.0, np.inf, 3.0, 4.0]),
         r"interactions.weight must be finite, but row 1 is inf"),
        (make_items(), make_interactions(weight=[1.0, np.nan, 3.0, 4.0]),
         r"interactions.weight is required but null in 1 rows"),
        (make_items(), make_interactions(weight=["1", "heavy", "3", "4"]),
         r"interactions.weight must be numeric, but row 1 is 'heavy'"),
        (make_items(), make_interactions(timestamp=["2003-01-01", "yesterday",
                                                    None, "2003-01-04"]),
         r"interactions.timestamp has 1 unparsable values, first 'yesterday' in row 1"),
        (make_items(), make_interactions(event_type=["rating", None, "x", "y"]),
         r"interactions.event_type is required but null"),
        ("not a frame", make_interactions(), "items must be a pandas DataFrame, got str"),
    ],
)
def test_invalid_input_raises(items, interactions, message):
    with pytest.raises(DataValidationError, match=message):
        validate_dataset(items, interactions)


def test_error_is_value_error():
    assert issubclass(DataValidationError, ValueError)


def test_required_timestamps_missing_raises():
    frame = make_interactions(timestamp=[None, "2003-01-01", None, None])
    _, checked, _, _ = validate_dataset(make_items(), frame)
    assert checked["timestamp"].isna().sum() == 3

    with pytest.raises(DataValidationError,
                       match=r"timestamp is missing in 3 rows \(first in row 0, user 'u1'\)"):
        validate_dataset(make_items(), frame, require_timestamps=True)


# Users --------------------------------------------------------------------


def test_users_validated_and_counted():
    users = pd.DataFrame({"gender": ["F", "M"], "user_id": ["u1", "u2"],
                          "age": [25, 35]})
    _, _, checked, report = validate_dataset(make_items(), make_interactions(), users)

    assert list(checked.columns) == ["user_id", "gender", "age"]
    assert report["rows_out"]["users"] == 2
    assert report["counts"]["users"] == 2
    assert report["counts"]["interactions_without_user_row"] == 1


@pytest.mark.parametrize(
    ("users", "message"),
    [
        (pd.DataFrame({"id": ["u1"]}), "users table lacks column 'user_id'"),
        (pd.DataFrame({"user_id": ["u1", "u1"]}), r"users.user_id must be unique"),
        (pd.DataFrame({"user_id": ["u1"], "history": [["a", "b"]]}),
         r"users.history has values of kind 'mixed'"),
        (pd.DataFrame({"user_id": []}), "users table is empty"),
    ],
)
def test_invalid_users_raise(users, message):
    with pytest.raises(DataValidationError, match=message):
        validate_dataset(make_items(), make_interactions(), users)
