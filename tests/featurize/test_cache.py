"""Tests of the incremental embedding cache, on local disk and on gs://."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gfm import storage
from gfm.featurize import cache as cache_module
from gfm.featurize.cache import EmbeddingCache, cache_key
from gfm.featurize.models import ResolvedModel

MODEL = ResolvedModel(name="m", path="/models/m", max_length=128, fingerprint="ab" * 32)


def _vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


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
