"""Tests of the vLLM engine against sentence-transformers on real items.

vLLM takes about 40 s to load on CPU, so it is loaded twice in the whole
suite: once by featurize_items in its child process and once by
featurize_items_ray through ray.data.llm.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gfm.featurize import FeaturizeConfig, RayOptions, featurize_items, featurize_items_ray

from .conftest import make_items

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

# Per-item cosine similarity both engines must reach on the same texts.
MIN_COSINE = 0.999


@pytest.fixture(scope="module")
def catalog(real_items) -> pd.DataFrame:
    """Real items plus one whose text far exceeds the model's 256 tokens."""
    long_item = make_items([{
        "item_id": "movie:long", "item_type": "movie", "title": "A Very Long Film",
        "description": " ".join(["an epic saga of families and wars"] * 120),
    }])
    return pd.concat([real_items, long_item], ignore_index=True)


@pytest.fixture(scope="module")
def reference(catalog):
    return featurize_items(catalog, FeaturizeConfig(engine="sentence-transformers",
                                                    device="cpu", batch_size=64))


def _cosines(left, right) -> np.ndarray:
    return np.sum(left.matrix * right.matrix, axis=1)


def test_vllm_matches_sentence_transformers(catalog, reference):
    result = featurize_items(catalog, FeaturizeConfig(engine="vllm", device="cpu",
                                                      batch_size=64))
    cosines = _cosines(result, reference)

    assert result.metadata["engine"] == "vllm"
    assert result.item_ids == reference.item_ids
    assert result.metadata["truncated"] >= 1
    assert set(result.metadata["items_per_type"]) == {"movie", "artist", "tag"}
    assert cosines.min() >= MIN_COSINE, catalog["item_id"][int(cosines.argmin())]
    assert cosines[-1] >= MIN_COSINE


def test_vllm_on_ray_data_llm_matches(catalog, reference, ray_cluster):
    items = catalog.groupby("item_type").head(30).reset_index(drop=True)
    config = FeaturizeConfig(
        engine="vllm", device="cpu", batch_size=32,
        ray=RayOptions(num_actors=1, num_cpus_per_actor=1),
    )

    result = featurize_items_ray(items, config)
    expected = reference.select(result.item_ids)
    cosines = np.sum(result.matrix * expected, axis=1)

    assert result.metadata["ray_backend"] == "ray.data.llm"
    assert result.metadata["engine"] == "vllm"
    assert len(result) == len(items)
    assert cosines.min() >= MIN_COSINE
    assert ray_cluster.is_initialized()
