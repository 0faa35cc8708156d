"""Tests of gfm.data.synthetic: settings, structure, determinism, streaming."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from gfm.data import Dataset
from gfm.data.synthetic import (
    SyntheticConfig,
    _build_catalog,
    generate_dataset,
    write_synthetic,
)
from gfm.data.validate import validate_dataset

SMALL = {"num_users": 300, "items_per_type": {"movie": 120, "podcast": 40},
         "num_interactions": 20_000, "num_clusters": 4, "seed": 11}


@pytest.fixture(scope="module")
def small() -> Dataset:
    return generate_dataset(SyntheticConfig.from_dict(SMALL))


def test_config_from_dict_and_defaults():
    config = SyntheticConfig.from_dict({"num_users": 10})
    assert config.num_users == 10
    assert config.items_per_type == {"movie": 500, "podcast": 200}
    assert SyntheticConfig.from_dict(None) == SyntheticConfig()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"num_user": 3}, r"unknown synthetic settings \['num_user'\]"),
        ({"items_per_type": {}}, "items_per_type is empty"),
        ({"items_per_type": {"a:b": 3}}, "item type 'a:b' is invalid"),
        ({"items_per_type": {"movie": 0}}, r"items_per_type\['movie'\] must be a positive"),
        ({"num_interactions": 0}, "num_interactions must be a positive integer"),
        ({"zipf_exponent": -1.0}, "exponents must be >= 0"),
        ({"cluster_affinity": 1.5}, r"cluster_affinity must be in \[0, 1\]"),
        ({"start_date": "2024-02-01", "end_date": "2024-01-01"}, "must be before"),
    ],
)
def test_config_invalid_values_raise(values, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig.from_dict(values)


def test_tables_follow_contract(small: Dataset):
    items, interactions, _, report = validate_dataset(small.items, small.interactions,
                                                          small.users, strict=True)
    pd.testing.assert_frame_equal(items, small.items)
    pd.testing.assert_frame_equal(interactions, small.interactions)
    assert report["conversions"] == []
    assert len(small.interactions) == 20_000
    assert len(small.items) == 160
    assert small.item_types == ["movie", "podcast"]
    assert list(small.users.columns) == ["user_id", "country", "age_group"]


def test_items_have_text(small: Dataset):
    items = small.items
    assert items["title"].str.len().gt(0).all()
    assert items["description"].str.match(r"A \w+ (?:movie|podcast) of").all()
    assert items["genres"].map(len).between(2, 3).all()
    assert items["tags"].map(len).between(2, 3).all()
    assert items["release_year"].between(1970, 2024).all()


def test_report_counts_match_tables(small: Dataset):
    counts = small.report["counts"]
    by_type = small.interactions["item_id"].str.split(":").str[0].value_counts()
    assert counts["interactions_by_item_type"] == {"movie": by_type["movie"],
                                                   "podcast": by_type["podcast"]}
    assert counts["users_in_interactions"] == small.interactions["user_id"].nunique()
    assert counts["items_with_interactions"] == small.interactions["item_id"].nunique()
    assert counts["timestamp_min"] == small.interactions["timestamp"].min().isoformat()
    assert small.report["rows_out"]["interactions"] == 20_000


def test_timestamps_within_range(small: Dataset):
    timestamps = small.interactions["timestamp"]
    assert timestamps.min() >= pd.Timestamp("2024-01-01", tz="UTC")
    assert timestamps.max() < pd.Timestamp("2024-04-01", tz="UTC")


def test_popularity_follows_power_law():
    config = SyntheticConfig(num_users=2_000, items_per_type={"movie": 1_000},
                             num_interactions=200_000, cluster_affinity=0.0,
                             zipf_exponent=1.0, seed=3)
    counts = generate_dataset(config).interactions["item_id"].value_counts().to_numpy()
    # With exponent 1 the top item gets 1 / H(1000), about 13 %, of all draws.
    assert 0.11 < counts[0] / counts.sum() < 0.16
    assert counts[0] / counts[9] == pytest.approx(10, rel=0.25)
    flat = generate_dataset(SyntheticConfig(
        num_users=2_000, items_per_type={"movie": 1_000}, num_interactions=200_000,
        zipf_exponent=0.0, seed=3)).interactions["item_id"].value_counts().to_numpy()
    assert flat[0] / flat.sum() < 0.002


def test_users_prefer_their_cluster():
    config = SyntheticConfig.from_dict(dict(SMALL, cluster_affinity=0.9))
    catalog = _build_catalog(config)
    dataset = generate_dataset(config)
    item_cluster = {}
    for table_rows, cluster in zip(np.split(catalog.segment_rows, np.cumsum(
            catalog.segment_sizes)[:-1]), range(len(catalog.segment_sizes))):
        for row in table_rows:
            item_cluster[catalog.items["item_id"].iloc[row]] = cluster % config.num_clusters
    user_cluster = dict(zip(catalog.user_ids.to_pylist(), catalog.user_clusters))
    same = np.mean([item_cluster[i] == user_cluster[u] for u, i in zip(
        dataset.interactions["user_id"], dataset.interactions["item_id"])])
    # 90 % from the own cluster plus a quarter of the other 10 % by chance.
    assert 0.88 < same < 0.96


def test_same_seed_same_data():
    first = generate_dataset(SyntheticConfig.from_dict(SMALL))
    again = generate_dataset(SyntheticConfig.from_dict(SMALL))
    other = generate_dataset(SyntheticConfig.from_dict(dict(SMALL, seed=12)))
    pd.testing.assert_frame_equal(first.interactions, again.interactions)
    pd.testing.assert_frame_equal(first.items, again.items)
    assert not first.interactions["item_id"].equals(other.interactions["item_id"])


def test_write_matches_generate(tmp_path: Path, small: Dataset):
    report = write_synthetic(SyntheticConfig.from_dict(SMALL), tmp_path / "synth")
    loaded = Dataset.load(tmp_path / "synth")

    pd.testing.assert_frame_equal(loaded.interactions, small.interactions)
    pd.testing.assert_frame_equal(loaded.items, small.items)
    pd.testing.assert_frame_equal(loaded.users, small.users)
    assert report["generation"]["interactions"] == 20_000
    assert report["generation"]["interactions_parquet_bytes"] > 0
    assert report["counts"] == small.report["counts"]


def test_write_streams_row_groups(tmp_path: Path, gcs_emulator):
    bucket = gcs_emulator.create_bucket("data-tests")
    uri = f"{bucket}/{uuid.uuid4().hex}/synth"
    config = SyntheticConfig.from_dict(dict(SMALL, num_interactions=10_500))

    report = write_synthetic(config, uri, chunk_rows=2_000)
    local = tmp_path / "local"
    write_synthetic(config, local, chunk_rows=2_000)

    metadata = pq.ParquetFile(local / "interactions.parquet").metadata
    assert metadata.num_row_groups == 6
    assert metadata.row_group(5).num_rows == 500
    assert report["generation"]["chunk_rows"] == 2_000
    loaded = Dataset.load(uri)
    assert len(loaded.interactions) == 10_500
    assert loaded.name == "synthetic"


def test_write_rejects_bad_chunk_rows(tmp_path: Path):
    with pytest.raises(ValueError, match="chunk_rows must be positive"):
        write_synthetic(SyntheticConfig.from_dict(SMALL), tmp_path, chunk_rows=0)
