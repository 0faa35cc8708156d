"""Tests of the incremental embedding cache, on local disk and on gs://."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gfm import storage
from gfm.featurize import cache as cache_module
from gfm.featurize.cache import EmbeddingCache, cache_key
from gfm.featurize.models import ResolvedModel

MODEL = ResolvedModel(name="m", path="/models/m", max_length=128, fingerprint="ab" * 32)


def _vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    """Return ``[n, dim]`` float32 unit rows, as an engine outputs them."""
    matrix = np.random.default_rng(seed).standard_normal((n, dim))
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def test_cache_key_changes_with_every_part():
    base = cache_key(MODEL, "{title}", "v1", "Heat")
    other_model = dataclasses.replace(MODEL, fingerprint="cd" * 32)
    shorter = dataclasses.replace(MODEL, max_length=64)

    assert base == cache_key(MODEL, "{title}", "v1", "Heat")
    assert len(base) == 64
    assert cache_key(other_model, "{title}", "v1", "Heat") != base
    assert cache_key(shorter, "{title}", "v1", "Heat") != base
    assert cache_key(MODEL, "{title}.", "v1", "Heat") != base
    assert cache_key(MODEL, "{title}", "v2", "Heat") != base
    assert cache_key(MODEL, "{title}", "v1", "Heat ") != base
    assert cache_key(MODEL, "{title}", "v1a", "Heat") != cache_key(MODEL, "{title}", "v1",
                                                                    "aHeat")


def _round_trip(uri: str) -> None:
    keys = [f"k{i}" for i in range(5)]
    vectors = _vectors(5)
    writer = EmbeddingCache(uri, MODEL)
    assert writer.load() == 0
    shard = writer.add(keys, vectors)

    reader = EmbeddingCache(uri, MODEL)
    count = reader.load()
    found, hits = reader.lookup(["k3", "missing", "k0"])

    assert shard.startswith(storage.join(uri, MODEL.fingerprint[:16]))
    assert count == 5
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(hits, vectors[[3, 0]])


def test_cache_round_trip_local(tmp_path):
    _round_trip(str(tmp_path / "cache"))


def test_cache_round_trip_gcs(gcs_emulator):
    bucket = gcs_emulator.create_bucket("gfm-featurize-cache")

    _round_trip(f"{bucket}/run-1/cache")


def test_cache_separates_models(tmp_path):
    uri = str(tmp_path / "cache")
    EmbeddingCache(uri, MODEL).add(["k"], _vectors(1))
    other = EmbeddingCache(uri, dataclasses.replace(MODEL, fingerprint="ef" * 32))

    assert other.load() == 0


def test_cache_lookup_on_empty_cache(tmp_path):
    cache = EmbeddingCache(str(tmp_path / "cache"), MODEL)
    cache.load()

    found, hits = cache.lookup(["a", "b"])

    assert found.tolist() == [False, False]
    assert hits.shape[0] == 0


def test_cache_merges_shards_past_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "MAX_SHARDS", 2)
    uri = str(tmp_path / "cache")
    all_vectors = _vectors(4, seed=1)
    for i in range(4):
        cache = EmbeddingCache(uri, MODEL)
        cache.load()
        cache.add([f"k{i}"], all_vectors[i:i + 1])

    reader = EmbeddingCache(uri, MODEL)
    count = reader.load()
    found, hits = reader.lookup([f"k{i}" for i in range(4)])

    assert len(storage.list_files(reader.uri)) <= 2
    assert count == 4
    assert found.all()
    np.testing.assert_array_equal(hits, all_vectors)


def test_cache_add_rejects_misaligned_input(tmp_path):
    cache = EmbeddingCache(str(tmp_path / "cache"), MODEL)

    with pytest.raises(ValueError, match="2 cache keys for 1 embeddings"):
        cache.add(["a", "b"], _vectors(1))
    assert cache.add([], _vectors(0)) is None


def test_cache_load_survives_concurrent_merge(tmp_path, monkeypatch, gfm_logs):
    monkeypatch.setattr(cache_module, "MAX_SHARDS", 2)
    gfm_logs.set_level(logging.DEBUG, logger="gfm.featurize.cache")
    uri = str(tmp_path / "cache")
    vectors = _vectors(3)
    for i in range(2):
        writer = EmbeddingCache(uri, MODEL)
        writer.load()
        writer.add([f"k{i}"], vectors[i:i + 1])
    merger = EmbeddingCache(uri, MODEL)
    merger.load()
    list_files = storage.list_files

    def list_then_merge(folder):
        # Another run merges (and deletes) the listed shards before they are read.
        names = list_files(folder)
        monkeypatch.setattr(storage, "list_files", list_files)
        merger.add(["k2"], vectors[2:3])
        return names

    monkeypatch.setattr(storage, "list_files", list_then_merge)
    reader = EmbeddingCache(uri, MODEL)
    count = reader.load()
    found, hits = reader.lookup(["k0", "k1", "k2"])

    assert count == 3
    assert found.all()
    np.testing.assert_array_equal(hits, vectors)
    assert reader.skipped_shards == []
    assert "was deleted after the first listing" in gfm_logs.text
    assert "WARNING" not in gfm_logs.text


def test_cache_load_skips_vanished_shard(tmp_path, monkeypatch):
    uri = str(tmp_path / "cache")
    for i in range(2):
        EmbeddingCache(uri, MODEL).add([f"k{i}"], _vectors(1, seed=i))
    list_files = storage.list_files

    def list_then_delete_first(folder):
        names = list_files(folder)
        storage.delete(names[0])
        return names

    monkeypatch.setattr(storage, "list_files", list_then_delete_first)
    reader = EmbeddingCache(uri, MODEL)

    assert reader.load() == 1
    assert reader.skipped_shards == []


def test_cache_rejects_invalid_rows(tmp_path, gfm_logs):
    cache = EmbeddingCache(str(tmp_path / "cache"), MODEL)
    vectors = _vectors(5)
    vectors[0] = np.nan
    vectors[1] *= 7
    vectors[2, 0] = np.inf
    shard = cache._write_shard(["k0", "k1", "k2", None, "k4"], vectors)

    count = cache.load()
    found, hits = cache.lookup(["k0", "k1", "k2", "k4"])

    assert count == 1
    assert found.tolist() == [False, False, False, True]
    np.testing.assert_array_equal(hits, vectors[[4]])
    assert cache.invalid_rows == 4
    assert cache.count_invalid(["k0", "k1", "k2", "k4", "other"]) == 3
    assert f"4 of 5 rows of shard {shard}" in gfm_logs.text


def test_cache_later_valid_row_replaces_invalid(tmp_path):
    uri = str(tmp_path / "cache")
    vectors = _vectors(2)
    bad = vectors.copy()
    bad[0] *= 3
    EmbeddingCache(uri, MODEL)._write_shard(["k0", "k1"], bad)
    EmbeddingCache(uri, MODEL).add(["k0"], vectors[:1])

    reader = EmbeddingCache(uri, MODEL)
    count = reader.load()
    found, hits = reader.lookup(["k0", "k1"])

    assert count == 2
    assert found.all()
    np.testing.assert_array_equal(hits, vectors)
    assert reader.invalid_rows == 1
    assert reader.count_invalid(["k0"]) == 0


def test_cache_merge_drops_invalid_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "MAX_SHARDS", 1)
    uri = str(tmp_path / "cache")
    vectors = _vectors(3)
    bad = vectors[:2].copy()
    bad[0] = np.nan
    EmbeddingCache(uri, MODEL)._write_shard(["k0", "k1"], bad)
    writer = EmbeddingCache(uri, MODEL)
    writer.load()
    writer.add(["k2"], vectors[2:])

    reader = EmbeddingCache(uri, MODEL)
    count = reader.load()

    assert count == 2
    assert reader.invalid_rows == 0
    assert len(storage.list_files(reader.uri)) == 1


def _shard_path(cache: EmbeddingCache, name: str) -> str:
    path = storage.join(cache.uri, f"part-{name}.parquet")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize(("table", "message"), [
    (pa.table({"key": ["k9"]}), r"expected columns \['key', 'embedding'\]"),
    (pa.table({"key": ["k9"], "embedding": pa.array([[1.0, 0.0]], pa.list_(pa.float32()))}),
     "expected a fixed-size list of floats"),
    (pa.table({"key": [9], "embedding": pa.FixedSizeListArray.from_arrays(
        pa.array([1.0] + [0.0] * 7, pa.float32()), 8)}), "expected string"),
])
def test_cache_skips_malformed_shard(tmp_path, gfm_logs, table, message):
    cache = EmbeddingCache(str(tmp_path / "cache"), MODEL)
    cache.add(["k0"], _vectors(1))
    malformed = _shard_path(cache, "0-malformed")
    pq.write_table(table, malformed)

    count = cache.load()

    assert count == 1
    assert cache.skipped_shards == [malformed]
    assert f"skipping unreadable shard {malformed}" in gfm_logs.text
    assert re.search(message, gfm_logs.text)


def test_cache_skips_truncated_shard(tmp_path, gfm_logs):
    cache = EmbeddingCache(str(tmp_path / "cache"), MODEL)
    cache.add(["k0"], _vectors(1))
    truncated = cache.add(["k1"], _vectors(1, seed=1))
    with open(truncated, "r+b") as handle:
        handle.truncate(100)

    count = cache.load()

    assert count == 1
    assert cache.lookup(["k0"])[0].tolist() == [True]
    assert cache.skipped_shards == [truncated]
    assert f"skipping unreadable shard {truncated}" in gfm_logs.text


def test_cache_skips_shard_of_minority_dim(tmp_path, gfm_logs):
    cache = EmbeddingCache(str(tmp_path / "cache"), MODEL)
    cache.add(["k0", "k1"], _vectors(2, dim=8))
    other = cache.add(["k2"], _vectors(1, dim=4))

    count = cache.load()
    found, hits = cache.lookup(["k0", "k1", "k2"])

    assert count == 2
    assert found.tolist() == [True, True, False]
    assert hits.shape == (2, 8)
    assert cache.skipped_shards == [other]
    assert f"skipping shard {other}: dim 4, but most cached rows have dim 8" in gfm_logs.text
