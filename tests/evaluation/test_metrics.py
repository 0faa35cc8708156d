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
    keys = ranking_keys(scores, tie_break_offsets(scores.shape[1], seed))
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
    keys = ranking_keys(scores, tie_break_offsets(5, seed=3))

    order_of_scores = np.argsort(-scores[0].astype(np.float64), kind="stable")
    order_of_keys = torch.argsort(keys[0], descending=True).numpy()
    assert order_of_keys.tolist() == order_of_scores.tolist()
    assert len(set(keys[0].tolist())) == 5


def test_ranking_keys_break_ties_by_seeded_order():
    scores = np.zeros((1, 50), dtype=np.float32)
    first = torch.argsort(ranking_keys(scores, tie_break_offsets(50, 1))[0]).tolist()
    again = torch.argsort(ranking_keys(scores, tie_break_offsets(50, 1))[0]).tolist()
    other = torch.argsort(ranking_keys(scores, tie_break_offsets(50, 2))[0]).tolist()

    assert first == again
    assert first != other
    assert first != list(range(50))
    assert len(set(ranking_keys(scores, tie_break_offsets(50, 1))[0].tolist())) == 50


def test_constant_scores_rank_at_random():
    # With constant scores, a user's single positive ranks uniformly at random,
    # so the mean HR@10 over many users is about 10 / num_items.
    num_users, num_items = 2000, 100
    generator = np.random.default_rng(0)
    positives = np.zeros((num_users, num_items), dtype=np.float32)
    positives[np.arange(num_users), generator.integers(0, num_items, num_users)] = 1
    result = _rank(np.zeros((num_users, num_items)), positives, hit_k=10)

    assert abs(result.hr.mean() - 0.1) < 0.03


def test_coverage_counts_distinct_candidates():
    top = np.array([[0, 1, 2], [2, 3, -1]])

    assert coverage(top, 8) == 0.5
    assert coverage(np.zeros((0, 3), dtype=np.int32), 8) == 0.0
    assert math.isnan(coverage(top, 0))
