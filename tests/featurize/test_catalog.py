"""Tests of items-table checks and text preparation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gfm.embeddings import ItemEmbeddings
from gfm.featurize import FeaturizeConfig
from gfm.featurize.catalog import prepare_texts, validate_items

from .conftest import make_items


def test_validate_empty_catalog_raises():
    with pytest.raises(ValueError, match="items table is empty"):
        validate_items(make_items([]))


def test_validate_duplicate_ids_raises(small_items):
    items = pd.concat([small_items, small_items.iloc[[0, 0, 3]]], ignore_index=True)

    with pytest.raises(ValueError, match=r"2 item ids occur more than once \(5 rows\), "
                                         r"first \['movie:1', 'artist:1'\]"):
        validate_items(items)


def test_validate_ids_equal_as_strings_raise(small_items):
    items = small_items.iloc[:3].copy()
    items["item_id"] = pd.Series([1, "1", "movie:3"], dtype=object)

    with pytest.raises(ValueError, match=r"1 item ids occur more than once \(2 rows\), "
                                         r"first \['1'\]; as strings these collide: "
                                         r"\{'1': \[1, '1'\]\}"):
        validate_items(items)


def test_item_embeddings_names_duplicate_ids():
    with pytest.raises(ValueError, match=r"2 ids occur more than once, first \['a', 'b'\]"):
        ItemEmbeddings(item_ids=["a", "b", "a", "c", "b"], item_types=["t"] * 5,
                       matrix=np.zeros((5, 2), dtype=np.float32))


def test_validate_null_id_raises(small_items):
    small_items.loc[2, "item_id"] = None

    with pytest.raises(ValueError, match="1 items have a null item_id"):
        validate_items(small_items)


def test_validate_missing_column_raises(small_items):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['item_type'\]"):
        validate_items(small_items.drop(columns=["item_type"]))


def test_validate_not_a_frame_raises():
    with pytest.raises(ValueError, match="must be a pandas DataFrame, got list"):
        validate_items([{"item_id": "movie:1"}])


def test_prepare_texts_reports_counts(small_items):
    catalog = prepare_texts(small_items, FeaturizeConfig())

    assert len(catalog.texts) == len(small_items)
    assert catalog.texts[2] == "Metropolis"
    assert catalog.items_per_type == {"movie": 3, "artist": 2, "tag": 1}
    assert catalog.missing_fields["movie"]["release_year"] == 1
    assert catalog.templates[3] == FeaturizeConfig().templates["artist"]
    assert catalog.empty_texts == {}


def test_prepare_texts_empty_text_raises_by_default(small_items):
    small_items.loc[[1, 5], "title"] = "  "
    small_items.loc[1, "genres"] = None
    small_items.loc[1, "release_year"] = pd.NA

    with pytest.raises(ValueError, match=r"2 items render to an empty text .*"
                                         r"first \['movie:2', 'tag:1'\]"):
        prepare_texts(small_items, FeaturizeConfig())


def test_prepare_texts_empty_text_as_item_type(small_items):
    small_items.loc[5, "title"] = ""

    catalog = prepare_texts(small_items, FeaturizeConfig(empty_text="item_type"))

    assert catalog.texts[5] == "tag"
    assert catalog.empty_texts == {"tag": 1}
