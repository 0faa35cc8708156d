"""Tests of the full-ranking metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from gfm.evaluation.metrics import (
    coverage,
    rank_batch,
    ranking_keys,
    removed_mask,
    tie_break_offsets,
)


def _rank(scores, positives, history=None, candidates=None, hit_k=2, ranking_k=3,
          coverage_k=3, seed=0):
    scores = np.asarray(scores, dtype=np.float32)
    history = sp.csr_matrix(np.zeros_like(scores) if history is None else history)
    user_ids = [f"u{row}" for row in range(scores.shape[0])]
    keys = ranking_keys(scores, tie_break_offsets(user_ids, scores.shape[1], seed))
    removed = removed_mask(history, candidates)
    return rank_batch(keys, removed, sp.csr_matrix(np.asarray(positives, np.float32)),
                      hit_k, ranking_k, coverage_k)


def test_rank_batch_hand_computed_user():
    # Ranking: item 4 (0.9), 2 (0.8), 0 (0.5), 1 (0.3), 3 (0.1); positives 0 and 3.
    result = _rank([[0.5, 0.3, 0.8, 0.1, 0.9]], [[1, 0, 0, 1, 0]])

    assert result.has_positive.tolist() == [True]
    assert result.hr[0] == 0.0
    assert math.isclose(result.mrr[0], 1 / 3)
    assert math.isclose(result.recall[0], 1 / 2)
    ideal = 1 + 1 / math.log2(3)
    assert math.isclose(result.ndcg[0], (1 / math.log2(4)) / ideal)
    assert result.top_items[0].tolist() == [4, 2, 0]


def test_rank_batch_history_items_removed():
    # Item 4 is in the history, so item 2 ranks first and positive 0 second.
    result = _rank([[0.5, 0.3, 0.8, 0.1, 0.9]], [[1, 0, 0, 1, 0]],
                   history=[[0, 0, 0, 0, 1]])

    assert result.hr[0] == 1.0
    assert math.isclose(result.mrr[0], 1 / 2)
    assert 4 not in result.top_items[0].tolist()


def test_rank_batch_candidate_set_restricts_ranking():
    candidates = np.array([True, True, False, True, False])
    result = _rank([[0.5, 0.3, 0.8, 0.1, 0.9]], [[0, 0, 0, 1, 0]],
                   candidates=candidates, coverage_k=5)

    assert math.isclose(result.mrr[0], 1 / 3)
    assert result.top_items[0].tolist() == [0, 1, 3, -1, -1]


def test_rank_batch_user_without_positive_is_nan():
    result = _rank([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], [[0, 0, 0], [1, 0, 0]])

    assert result.has_positive.tolist() == [False, True]
    assert math.isnan(result.hr[0])
    assert math.isnan(result.ndcg[0])
    assert result.hr[1] == 1.0
    assert result.ndcg[1] == 1.0


def test_rank_batch_perfect_ranking_scores_one():
    result = _rank([[0.9, 0.8, 0.1, 0.0]], [[1, 1, 0, 0]], hit_k=1, ranking_k=2)

    assert result.hr[0] == 1.0
    assert result.mrr[0] == 1.0
    assert result.recall[0] == 1.0
    assert math.isclose(result.ndcg[0], 1.0)


def test_ranking_keys_keep_order_of_distinct_scores():
    scores = np.array([[1.0, np.nextafter(np.float32(1.0), np.float32(2.0)), -1.0,
                        np.nextafter(np.float32(-1.0), np.float32(0.0)), 0.0]],
                      dtype=np.float32)
    keys = ranking_keys(scores, tie_break_offsets(["u1"], 5, seed=3))

    order_of_scores = np.argsort(-scores[0].astype(np.float64), kind="stable")
    order_of_keys = torch.argsort(keys[0], descending=True).numpy()
    assert order_of_keys.tolist() == order_of_scores.tolist()
    assert len(set(keys[0].tolist())) == 5


def _tie_order(user_id, seed, num_items=50):
    scores = np.zeros((1, num_items), dtype=np.float32)
    keys = ranking_keys(scores, tie_break_offsets([user_id], num_items, seed))
    return torch.argsort(keys[0], descending=True).tolist()


def test_ranking_keys_break_ties_by_seeded_order():
    first = _tie_order("u1", seed=1)

    assert first == _tie_order("u1", seed=1)
    assert first != _tie_order("u1", seed=2)
    assert first != list(range(50))
    assert sorted(first) == list(range(50))


def test_tie_order_differs_between_users():
    assert _tie_order("u1", seed=1) != _tie_order("u2", seed=1)


def test_tie_order_independent_of_batch():
    # A user's order depends on the user id only, not on the batch around it.
    alone = tie_break_offsets(["u7"], 30, seed=4)
    in_batch = tie_break_offsets(["u1", "u2", "u7"], 30, seed=4)

    assert torch.equal(alone[0], in_batch[2])
    assert len(set(in_batch[2].tolist())) == 30


def _constant_scorer_figures(offsets, num_users=2000, num_items=100, positive_item=37):
    # Every user has the same single positive, so a tie order shared by all
    # users puts it in everyone's top 10 or in no one's.
    scores = np.zeros((num_users, num_items), dtype=np.float32)
    positives = np.zeros((num_users, num_items), dtype=np.float32)
    positives[:, positive_item] = 1
    keys = ranking_keys(scores, offsets)
    result = rank_batch(keys, removed_mask(sp.csr_matrix(scores), None),
                        sp.csr_matrix(positives), hit_k=10, ranking_k=10, coverage_k=10)
    return result.hr.mean(), result.mrr.mean()


def test_constant_scores_rank_at_random():
    # Under a uniformly random ranking of 100 candidates, a single positive is
    # in the top 10 with probability 10 / 100, and its expected reciprocal
    # rank is H_100 / 100. Over 2000 users the sample means have standard
    # deviations of about 0.0067 and 0.0026.
    num_users, num_items = 2000, 100
    user_ids = [f"user-{u}" for u in range(num_users)]
    hr, mrr = _constant_scorer_figures(tie_break_offsets(user_ids, num_items, seed=0))
    expected_mrr = sum(1 / rank for rank in range(1, num_items + 1)) / num_items

    assert abs(hr - 10 / num_items) < 0.03
    assert abs(mrr - expected_mrr) < 0.012


def test_constant_scores_shared_orders_miss_expectation():
    # The check above fails for tie orders shared by every user, which is the
    # property that makes it a test of per-user tie breaking.
    num_items = 100
    catalogue_order = torch.from_numpy((num_items - 1 - np.arange(num_items)) / num_items)
    shared = tie_break_offsets(["anyone"], num_items, seed=0)[0]

    for offsets in (catalogue_order, shared):
        hr, _ = _constant_scorer_figures(offsets)
        assert abs(hr - 0.1) >= 0.03


def test_coverage_counts_distinct_candidates():
    top = np.array([[0, 1, 2], [2, 3, -1]])

    assert coverage(top, 8) == 0.5
    assert coverage(np.zeros((0, 3), dtype=np.int32), 8) == 0.0
    assert math.isnan(coverage(top, 0))
