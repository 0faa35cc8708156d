"""Tests of featurize_items_ray on a local Ray cluster."""

from __future__ import annotations

import numpy as np
import pytest

from gfm.featurize import FeaturizeConfig, RayOptions, featurize_items, featurize_items_ray


@pytest.mark.slow
def test_featurize_items_ray_matches_single_process(real_items, ray_cluster):
    items = real_items.groupby("item_type").head(40).reset_index(drop=True)
    config = FeaturizeConfig(
        engine="sentence-transformers", device="cpu", batch_size=16,
        ray=RayOptions(num_actors=2, num_cpus_per_actor=1),
    )

    single = featurize_items(items, config)
    distributed = featurize_items_ray(items, config, num_actors=2)

    assert distributed.item_ids == single.item_ids
    assert distributed.item_types == single.item_types
    assert distributed.metadata["ray_num_actors"] == 2
    assert distributed.metadata["ray_backend"] == "map_batches"
    assert distributed.metadata["embedded"] == len(items)
    assert distributed.metadata["load_seconds"] is None
    assert distributed.metadata["items_per_second"] > 0
    np.testing.assert_allclose(distributed.matrix, single.matrix, atol=1e-5)
    assert ray_cluster.is_initialized()


def test_featurize_items_ray_rejects_zero_actors(small_items):
    with pytest.raises(ValueError, match="num_actors=-1 must be at least 1"):
        featurize_items_ray(small_items, FeaturizeConfig(), num_actors=-1)
