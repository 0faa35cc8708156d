"""Tests of the stand-in item embeddings."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gfm.twotower.stand_ins import genre_embeddings, svd_embeddings

ITEMS = pd.DataFrame({
    "item_id": ["m:1", "m:2", "m:3", "m:4"],
    "item_type": "movie",
    "genres": [["Drama"], ["Drama", "War"], None, ["Comedy"]],
})


def test_svd_embeddings_cover_catalog():
    train = pd.DataFrame({"user_id": ["a", "a", "b", "c", "c", "x"],
                          "item_id": ["m:1", "m:2", "m:2", "m:1", "m:4", "m:unknown"]})

    embeddings = svd_embeddings(train, ITEMS, dim=2)

    assert embeddings.item_ids == ITEMS["item_id"].tolist()
    assert embeddings.matrix.shape == (4, 2)
    assert np.all(embeddings.matrix[2] == 0)
    assert np.linalg.norm(embeddings.matrix[0]) > 0
    assert embeddings.metadata["rank"] == 2


def test_genre_embeddings_unit_norm_and_similar_genres():
    embeddings = genre_embeddings(ITEMS, dim=16)

    norms = np.linalg.norm(embeddings.matrix, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    cosine = embeddings.matrix @ embeddings.matrix.T
    assert cosine[0, 1] > cosine[0, 3]
    assert embeddings.item_types == ["movie"] * 4
