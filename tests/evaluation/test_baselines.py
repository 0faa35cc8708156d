"""Tests of the baselines against direct computations on small histories."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from gfm.embeddings import ItemEmbeddings
from gfm.evaluation.baselines import (
    EASEScorer,
    EmbeddingKNNScorer,
    ItemKNNScorer,
    PopularityScorer,
    _copy_upper_to_lower,
    _ease_weights,
    _keep_top_per_row,
)
from gfm.evaluation.config import EvaluationConfig
from gfm.evaluation.context import build_context

from .helpers import interactions, two_type_catalogue

HISTORY = [
    ("u1", "artist:0", 1), ("u1", "artist:1", 1), ("u1", "tag:0", 1),
    ("u2", "artist:0", 1), ("u2", "artist:2", 1), ("u2", "tag:0", 1),
    ("u3", "artist:1", 1), ("u3", "artist:2", 1), ("u3", "artist:3", 1),
    ("u4", "tag:0", 1),
]
TEST = [("u1", "artist:3", 1), ("u3", "artist:0", 1), ("u4", "artist:1", 1),
        ("u5", "artist:2", 1)]


def _context(embeddings=None, **config):
    return build_context(
        "artist", ["artist"], two_type_catalogue(), interactions(HISTORY),
        interactions(TEST, day=2), embeddings=embeddings,
        config=EvaluationConfig(**config),
    )


def test_popularity_scores_distinct_history_users():
    context = _context()
    scorer = PopularityScorer()
    scorer.fit(context)
    scores = scorer.score(["u1", "u5"])

    assert scores.shape == (2, 5)
    assert scores[0].tolist() == [2, 2, 2, 1, 0]
    assert scores[1].tolist() == scores[0].tolist()


def test_ease_matches_closed_form():
    context = _context(ease_l2=2.0)
    scorer = EASEScorer()
    scorer.fit(context)
    scores = scorer.score(["u1", "u3"])

    # Items 0..3 have history; artist:4 has none and is left out of EASE.
    x = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [0, 0, 0, 0]], float)
    precision = np.linalg.inv(x.T @ x + 2.0 * np.eye(4))
    weights = -precision / np.diag(precision)
    np.fill_diagonal(weights, 0.0)
    expected = x[[0, 2]] @ weights
    np.testing.assert_allclose(scores[:, :4], expected, rtol=1e-5, atol=1e-6)
    assert np.all(scores[:, 4] < scores[:, :4].min(axis=1))


def test_ease_max_items_keeps_most_popular():
    context = _context(ease_max_items=3)
    scorer = EASEScorer()
    scorer.fit(context)
    scores = scorer.score(["u1"])

    assert scorer._kept.tolist() == [0, 1, 2]
    assert np.all(scores[0, 3:] < scores[0, :3].min())
    assert scorer.fallback_users == 0


def test_ease_counts_excluded_items():
    # Kept: artist:0 and artist:1. artist:2 and artist:3 have history but are
    # beyond the cap, and artist:4 has none. Test positives: artist:3 (u1),
    # artist:0 (u3), artist:1 (u4), artist:2 (u5).
    context = _context(ease_max_items=2)
    scorer = EASEScorer()
    scorer.fit(context)

    assert scorer.excluded_items == {
        "max_items": 2,
        "items_with_history": 4,
        "items_beyond_max_items": 2,
        "test_positives_beyond_max_items": 2,
        "items_without_history": 1,
        "test_positives_without_history": 0,
        "test_positives": 4,
    }


def test_ease_history_outside_kept_items_falls_back():
    # With only artist:0 and artist:1 kept, u1 (artist:0 and artist:1) has no
    # kept candidate left outside the history.
    context = _context(ease_max_items=2)
    scorer = EASEScorer()
    scorer.fit(context)
    scores = scorer.score(["u1"])

    assert scores[0].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.0])
    assert scorer.fallback_users == 1


def test_ease_items_without_cooccurrence_fall_back():
    history = HISTORY + [("u6", "artist:4", 1)]
    context = build_context("artist", ["artist"], two_type_catalogue(),
                            interactions(history), interactions(TEST + [("u6", "artist:0", 1)],
                                                                day=2),
                            config=EvaluationConfig())
    scorer = EASEScorer()
    scorer.fit(context)
    scores = scorer.score(["u6"])

    # artist:4 co-occurs with nothing, so EASE gives u6 zero scores.
    assert np.argsort(-scores[0], kind="stable").tolist()[:3] == [0, 1, 2]
    assert scorer.fallback_users == 1


def test_explicit_zero_settings_raise():
    with pytest.raises(ValueError, match="l2 must be positive"):
        EASEScorer(l2=0)
    with pytest.raises(ValueError, match="max_items must be a positive integer"):
        EASEScorer(max_items=0)
    with pytest.raises(ValueError, match="neighbors must be a positive integer"):
        ItemKNNScorer(neighbors=0)
    with pytest.raises(ValueError, match="shrinkage must be >= 0"):
        ItemKNNScorer(shrinkage=-1.0)


def test_explicit_settings_override_config():
    context = _context(ease_l2=500.0, knn_shrinkage=10.0)
    ease = EASEScorer(l2=2.0)
    ease.fit(context)
    reference = EASEScorer()
    reference.fit(_context(ease_l2=2.0))
    knn = ItemKNNScorer(shrinkage=0.0)
    knn.fit(context)

    np.testing.assert_allclose(ease._weights, reference._weights, rtol=1e-5, atol=1e-7)
    assert knn.score(["u4"])[0, 0] == pytest.approx(2 / np.sqrt(3 * 2))


def test_copy_upper_to_lower_in_blocks():
    matrix = np.triu(np.arange(49, dtype=np.float32).reshape(7, 7))
    expected = matrix + np.triu(matrix, 1).T
    _copy_upper_to_lower(matrix, block=3)

    np.testing.assert_array_equal(matrix, expected)


def test_ease_weights_match_float64_inverse():
    binary = sp.csr_matrix((np.random.default_rng(0).random((200, 40)) < 0.2)
                           .astype(np.float32))
    weights = _ease_weights(binary, l2=5.0)

    dense = binary.toarray().astype(np.float64)
    precision = np.linalg.inv(dense.T @ dense + 5.0 * np.eye(40))
    expected = -precision / np.diag(precision)
    np.fill_diagonal(expected, 0.0)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, rtol=1e-3, atol=1e-5)


def test_item_knn_scores_sum_of_shrunk_cosine():
    context = _context(knn_shrinkage=0.0)
    scorer = ItemKNNScorer()
    scorer.fit(context)
    scores = scorer.score(["u4"])

    # u4 has only tag:0 (users u1, u2, u4); artist:0 shares u1 and u2 (2 users),
    # artist:1 shares u1 (2 users), artist:2 shares u2 (2 users).
    expected = [2 / np.sqrt(3 * 2), 1 / np.sqrt(3 * 2), 1 / np.sqrt(3 * 2), 0, 0]
    np.testing.assert_allclose(scores[0], expected, rtol=1e-5)
    assert scorer.fallback_users == 0


def test_item_knn_excludes_self_similarity():
    context = _context(knn_shrinkage=0.0)
    scorer = ItemKNNScorer()
    scorer.fit(context)
    dense = scorer._similarity.toarray()

    for column, row in enumerate(context.product_columns):
        assert dense[row, column] == 0.0


def test_baselines_fall_back_to_popularity_without_history():
    context = _context()
    for scorer in (ItemKNNScorer(), EASEScorer()):
        scorer.fit(context)
        scores = scorer.score(["u5"])
        assert np.argsort(-scores[0], kind="stable").tolist()[:3] == [0, 1, 2]
        assert scorer.fallback_users == 1


def test_item_knn_history_without_neighbours_falls_back():
    # u9's only history item, artist:4, co-occurs with nothing, so every
    # item-kNN score is 0 and u9 must get the popularity ranking.
    context = build_context(
        "artist", ["artist"], two_type_catalogue(),
        interactions(HISTORY + [("u9", "artist:4", 1)]),
        interactions(TEST + [("u9", "artist:0", 1)], day=2), config=EvaluationConfig(),
    )
    scorer = ItemKNNScorer()
    scorer.fit(context)
    scores = scorer.score(["u9", "u4"])

    # Popularity, normalized by its maximum: artist:4 now has one user.
    assert scores[0].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.5])
    assert scores[1, 0] > 0
    assert scorer.fallback_users == 1


def test_item_knn_neighbours_only_in_history_fall_back():
    # u3 now has artist:0 to artist:3, so every neighbour of its history items
    # is in the history, and artist:4, the only candidate left, scores 0.
    history = HISTORY + [("u3", "artist:0", 1)]
    context = build_context("artist", ["artist"], two_type_catalogue(),
                            interactions(history),
                            interactions([("u3", "artist:4", 1)], day=2),
                            config=EvaluationConfig())
    scorer = ItemKNNScorer()
    scorer.fit(context)
    scores = scorer.score(["u3"])

    assert scores[0, 4] == 0.0
    assert scorer.fallback_users == 1


def test_keep_top_per_row_keeps_largest():
    matrix = sp.csr_matrix(np.array([[0.1, 0.5, 0.3, 0.0], [0.2, 0.0, 0.0, 0.0]]))
    pruned = _keep_top_per_row(matrix, 2).toarray()

    assert pruned[0].tolist() == [0.0, 0.5, 0.3, 0.0]
    assert pruned[1].tolist() == [0.2, 0.0, 0.0, 0.0]


def _embeddings():
    catalogue = two_type_catalogue()
    matrix = np.zeros((8, 3), dtype=np.float32)
    matrix[0] = [1, 0, 0]
    matrix[1] = [0, 1, 0]
    matrix[2] = [0, 0, 1]
    matrix[3] = [1, 1, 0]
    matrix[4] = [0, 1, 1]
    matrix[5] = [2, 0, 0]   # tag:0 points where artist:0 does
    matrix[6] = [0, 0, 1]
    matrix[7] = [0, 1, 0]
    return ItemEmbeddings(catalogue["item_id"].tolist(),
                          catalogue["item_type"].tolist(), matrix)


def test_embedding_knn_uses_history_of_other_types():
    context = _context(embeddings={"llm": _embeddings()})
    scorer = EmbeddingKNNScorer("llm", name="llm-knn")
    scorer.fit(context)
    scores = scorer.score(["u4", "u1"])

    assert np.argmax(scores[0]) == 0
    np.testing.assert_allclose(scores[0, :3], [1, 0, 0], atol=1e-6)
    assert scorer.fallback_users == 0
    # Rows are L2-normalized first, so u1 = artist:0 + artist:1 + tag:0 = (2, 1, 0).
    user = np.array([2, 1, 0]) / np.sqrt(5)
    np.testing.assert_allclose(scores[1, 3], user @ (np.array([1, 1, 0]) / np.sqrt(2)),
                               rtol=1e-5)


def test_embedding_knn_product_history_only():
    context = _context(embeddings={"llm": _embeddings()},
                       embedding_history_types="product")
    scorer = EmbeddingKNNScorer("llm", name="llm-knn")
    scorer.fit(context)
    scorer.score(["u4"])

    assert scorer.fallback_users == 1


def test_embedding_knn_zero_user_vector_falls_back():
    # u4's only history item, tag:0, has a zero embedding, so the user vector
    # is zero and every cosine is 0.
    embeddings = _embeddings()
    embeddings.matrix[5] = 0.0
    context = _context(embeddings={"llm": embeddings})
    scorer = EmbeddingKNNScorer("llm", name="llm-knn")
    scorer.fit(context)
    scores = scorer.score(["u4"])

    assert scores[0].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.0])
    assert scorer.fallback_users == 1


def test_embedding_knn_missing_embeddings_raise():
    context = _context(embeddings={"llm": _embeddings()})
    with pytest.raises(ValueError, match="'hgnn' item embeddings"):
        EmbeddingKNNScorer("hgnn", name="hgnn-knn").fit(context)

    partial = _embeddings()
    partial = ItemEmbeddings(partial.item_ids[:4], partial.item_types[:4],
                             partial.matrix[:4])
    with pytest.raises(ValueError, match="cover every catalogue item"):
        EmbeddingKNNScorer("llm", name="llm-knn").fit(_context(embeddings={"llm": partial}))


def test_scorer_before_fit_raises():
    with pytest.raises(RuntimeError, match="before fit"):
        EASEScorer().score(["u1"])
