"""Exact and IVF top-k over one product's item matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gfm.serving import scoring
from gfm.serving.ann import IVFIndex
from gfm.serving.scoring import ProductCatalog


def unit_rows(rng, rows, dim):
    matrix = rng.standard_normal((rows, dim)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def catalog():
    rng = np.random.default_rng(7)
    num_items = 600
    item_ids = [f"item:{i}" for i in range(num_items)]
    item_types = ["artist" if i % 3 else "tag" for i in range(num_items)]
    popularity = rng.integers(0, 1000, num_items)
    return ProductCatalog("music", item_ids, item_types, unit_rows(rng, num_items, 16),
                          popularity)


def brute_force(catalog, user, k, banned=()):
    scores = catalog.item_matrix.numpy() @ user
    scores[list(banned)] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [catalog.item_ids[r] for r in order], scores[order]


def test_top_k_matches_brute_force(catalog):
    users = unit_rows(np.random.default_rng(1), 5, 16)
    rankings = catalog.top_k(torch.from_numpy(users), [10, 1, 30, 10, 600],
                             [[]] * 5, [None] * 5)
    for user, k, ranking in zip(users, [10, 1, 30, 10, 600], rankings):
        expected_ids, expected_scores = brute_force(catalog, user, k)
        assert ranking.item_ids == expected_ids
        np.testing.assert_allclose(ranking.scores, expected_scores, rtol=1e-5, atol=1e-6)
        assert ranking.exact is True
        assert ranking.excluded == 0


def test_top_k_scores_are_sorted(catalog):
    [ranking] = catalog.top_k(torch.from_numpy(unit_rows(np.random.default_rng(2), 1, 16)),
                              [50], [[]], [None])
    assert ranking.scores == sorted(ranking.scores, reverse=True)
    assert len(set(ranking.item_ids)) == 50


def test_top_k_excludes_consumed_rows(catalog):
    user = unit_rows(np.random.default_rng(3), 1, 16)
    [unfiltered] = catalog.top_k(torch.from_numpy(user), [5], [[]], [None])
    banned = catalog.rows(unfiltered.item_ids[:3] + ["not-a-candidate"])
    [ranking] = catalog.top_k(torch.from_numpy(user), [5], [banned], [None])
    assert len(banned) == 3
    assert not set(ranking.item_ids) & set(unfiltered.item_ids[:3])
    assert ranking.item_ids[:2] == unfiltered.item_ids[3:5]
    assert ranking.excluded == 3
    assert ranking.item_ids == brute_force(catalog, user[0], 5, banned)[0]


def test_top_k_restricts_item_types(catalog):
    users = torch.from_numpy(unit_rows(np.random.default_rng(4), 2, 16))
    tag_only, both = catalog.top_k(users, [20, 20], [[], []], [("tag",), ("artist", "tag")])
    types = dict(zip(catalog.item_ids, catalog._types))
    assert {types[i] for i in tag_only.item_ids} == {"tag"}
    assert len(tag_only.item_ids) == 20
    assert both.item_ids == brute_force(catalog, users[1].numpy(), 20)[0]


def test_top_k_returns_fewer_when_filters_leave_fewer(catalog):
    num_tags = sum(1 for t in catalog._types if t == "tag")
    user = torch.from_numpy(unit_rows(np.random.default_rng(5), 1, 16))
    [ranking] = catalog.top_k(user, [num_tags + 50], [[1, 2]], [("tag",)])
    assert len(ranking.item_ids) == num_tags
    assert all(np.isfinite(ranking.scores))


def test_top_k_chunks_large_batches(catalog, monkeypatch):
    users = torch.from_numpy(unit_rows(np.random.default_rng(6), 7, 16))
    whole = catalog.top_k(users, [8] * 7, [[0]] * 7, [None] * 7)
    # Two rows of scores per chunk: the batch is scored in four chunks.
    monkeypatch.setattr(scoring, "MAX_SCORES_PER_CHUNK", 2 * catalog.num_items)
    chunked = catalog.top_k(users, [8] * 7, [[0]] * 7, [None] * 7)
    assert [r.item_ids for r in chunked] == [r.item_ids for r in whole]


def test_top_k_rejects_wrong_dim(catalog):
    with pytest.raises(ValueError, match="dim 8"):
        catalog.top_k(torch.zeros(1, 8), [3], [[]], [None])


def test_popular_k_orders_by_count(catalog):
    [ranking] = catalog.popular_k([10], [[]], [None])
    counts = catalog.popularity
    assert ranking.scores == sorted(ranking.scores, reverse=True)
    assert ranking.scores[0] == counts.max()
    assert len(ranking.item_ids) == 10


def test_popular_k_applies_filters(catalog):
    [top] = catalog.popular_k([3], [[]], [None])
    banned = catalog.rows(top.item_ids[:1])
    [ranking] = catalog.popular_k([3], [banned], [("tag",)])
    types = dict(zip(catalog.item_ids, catalog._types))
    assert top.item_ids[0] not in ranking.item_ids
    assert {types[i] for i in ranking.item_ids} == {"tag"}
    assert ranking.excluded == 1


def test_ivf_top_k_recalls_exact_results():
    rng = np.random.default_rng(11)
    centers = unit_rows(rng, 40, 16)
    vectors = centers[rng.integers(0, 40, 5000)] + 0.1 * rng.standard_normal((5000, 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    item_ids = [f"item:{i}" for i in range(5000)]
    ann = IVFIndex(vectors, nprobe=16, nlist=64)
    approximate = ProductCatalog("p", item_ids, ["item"] * 5000, vectors,
                                 np.ones(5000), ann=ann)
    exact = ProductCatalog("p", item_ids, ["item"] * 5000, vectors, np.ones(5000))
    users = torch.from_numpy(vectors[:50] + 0.05)
    banned = [[0]] * 50
    found = approximate.top_k(users, [10] * 50, banned, [None] * 50)
    truth = exact.top_k(users, [10] * 50, banned, [None] * 50)
    recall = np.mean([len(set(f.item_ids) & set(t.item_ids)) / 10
                      for f, t in zip(found, truth)])
    assert recall > 0.9
    assert all(not f.exact for f in found)
    assert all("item:0" not in f.item_ids for f in found)
    assert all(len(f.item_ids) == 10 for f in found)


def test_ivf_leaves_type_filters_to_exact_search():
    rng = np.random.default_rng(12)
    vectors = unit_rows(rng, 400, 8)
    types = ["a" if i % 2 else "b" for i in range(400)]
    catalog = ProductCatalog("p", [f"i{i}" for i in range(400)], types, vectors,
                             np.ones(400), ann=IVFIndex(vectors, nprobe=2, nlist=8))
    users = torch.from_numpy(unit_rows(rng, 2, 8))
    filtered, plain = catalog.top_k(users, [5, 5], [[], []], [("a",), None])
    assert filtered.exact is True
    assert plain.exact is False


def test_excluded_counts_distinct_items_on_every_path():
    rng = np.random.default_rng(13)
    vectors = unit_rows(rng, 400, 8)
    item_ids = [f"i{i}" for i in range(400)]
    exact = ProductCatalog("p", item_ids, ["item"] * 400, vectors, np.ones(400))
    approximate = ProductCatalog("p", item_ids, ["item"] * 400, vectors, np.ones(400),
                                 ann=IVFIndex(vectors, nprobe=8, nlist=8))
    user = torch.from_numpy(unit_rows(rng, 1, 8))
    # One consumed item repeated 50 times, and a second one twice.
    banned = [exact.rows(["i7"] * 50 + ["i9", "i9"])]
    [exact_ranking] = exact.top_k(user, [10], banned, [None])
    [ivf_ranking] = approximate.top_k(user, [10], banned, [None])
    [popular_ranking] = exact.popular_k([10], banned, [None])

    assert exact_ranking.exact is True
    assert ivf_ranking.exact is False
    assert exact_ranking.excluded == 2
    assert ivf_ranking.excluded == 2
    assert popular_ranking.excluded == 2
    assert ivf_ranking.item_ids == exact_ranking.item_ids
