"""Tests of running scorers through the harness and its slices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gfm.evaluation.baselines import EASEScorer, ItemKNNScorer, PopularityScorer
from gfm.evaluation.config import EvaluationConfig
from gfm.evaluation.context import build_context
from gfm.evaluation.harness import evaluate_scorers
from gfm.evaluation.slices import build_views, popularity_tiers

from .helpers import interactions, two_type_catalogue

HISTORY = [
    ("u1", "artist:0", 1), ("u1", "artist:1", 1),
    ("u2", "artist:0", 1), ("u2", "tag:0", 1),
    ("u3", "tag:1", 1),
]
TEST = [("u1", "artist:2", 1), ("u2", "artist:4", 1), ("u3", "artist:1", 1),
        ("u4", "artist:4", 1), ("u4", "artist:3", 1)]


class OracleScorer:
    """Scores each user's test positives 1 and everything else 0."""

    name = "oracle"

    def fit(self, context):
        self.context = context

    def score(self, user_ids):
        rows = [self.context.eval_user_ids.index(u) for u in user_ids]
        return self.context.positives[rows].toarray().astype(np.float32)


class ConstantScorer:
    def __init__(self, name="constant", shape=None, value=0.0):
        self.name, self.shape, self.value = name, shape, value

    def fit(self, context):
        self.num_items = context.num_items

    def score(self, user_ids):
        shape = self.shape or (len(user_ids), self.num_items)
        return np.full(shape, self.value, dtype=np.float32)


def _context(**config):
    return build_context(
        "artist", ["artist"], two_type_catalogue(), interactions(HISTORY),
        interactions(TEST, day=2), cold_item_ids=["artist:4"],
        config=EvaluationConfig(hit_k=1, ranking_k=2, coverage_k=2, batch_size=3,
                                **config),
    )


def _rows(result, model):
    return {row["slice"]: row for row in result.rows if row["model"] == model}


def test_evaluate_scorers_oracle_scores_perfectly():
    result = evaluate_scorers(_context(), [OracleScorer()])
    rows = _rows(result, "oracle")

    assert rows["all"]["num_users"] == 4
    assert rows["all"]["hr@1"] == 1.0
    assert rows["all"]["mrr"] == 1.0
    assert rows["all"]["recall@2"] == 1.0
    assert math.isclose(rows["all"]["ndcg@2"], 1.0)


def test_evaluate_scorers_counts_users_per_slice():
    result = evaluate_scorers(_context(), [PopularityScorer()])
    rows = _rows(result, "popularity")

    assert rows["warm"]["num_users"] == 2             # u1, u2
    assert rows["cross_product_cold"]["num_users"] == 1  # u3 has only a tag
    assert rows["new_users"]["num_users"] == 1         # u4
    assert rows["cold_items"]["num_users"] == 2        # u2 and u4 hit artist:4
    assert rows["cold_items_among_cold"]["num_users"] == 2
    assert rows["cold_items_among_cold"]["hr@1"] == 1.0  # the only candidate
    assert rows["cold_items"]["view"] == "cold"
    assert set(result.slices) >= {"all", "warm", "popularity_head", "popularity_tail"}


def test_evaluate_scorers_popularity_ranks_popular_first():
    result = evaluate_scorers(_context(), [PopularityScorer()])
    rows = _rows(result, "popularity")

    # artist:0 (2 users) ranks first for users who have not seen it; u3's
    # positive artist:1 (1 user) ranks second, and u4's positives, without
    # history, rank behind both.
    assert math.isclose(result.value("popularity", "cross_product_cold", "mrr"), 0.5)
    assert rows["new_users"]["hr@1"] == 0.0
    assert rows["new_users"]["recall@2"] == 0.0
    assert 0.0 < rows["all"]["coverage@2"] <= 1.0


def test_evaluate_scorers_slice_without_users_is_nan():
    context = build_context(
        "artist", ["artist"], two_type_catalogue(), interactions(HISTORY),
        interactions([("u1", "artist:2", 1)], day=2),
    )
    rows = _rows(evaluate_scorers(context, [PopularityScorer()]), "popularity")

    assert rows["new_users"]["num_users"] == 0
    assert math.isnan(rows["new_users"]["hr@10"])
    assert "cold_items" not in rows


def test_evaluate_scorers_rejects_bad_scores():
    with pytest.raises(ValueError, match=r"shape \(1, 5\)"):
        evaluate_scorers(_context(), [ConstantScorer(shape=(1, 5))])
    with pytest.raises(ValueError, match="NaN or infinite"):
        evaluate_scorers(_context(), [ConstantScorer(value=float("nan"))])
    with pytest.raises(ValueError, match="unique"):
        evaluate_scorers(_context(), [ConstantScorer(), ConstantScorer()])


def test_evaluate_scorers_records_timings():
    result = evaluate_scorers(_context(), [PopularityScorer(), OracleScorer()])

    assert set(result.timings) == {"popularity", "oracle"}
    assert result.timings["oracle"]["users"] == 4
    assert result.timings["oracle"]["score_s"] >= 0.0
    with pytest.raises(KeyError, match="nobody"):
        result.value("nobody", "all", "mrr")


def test_popularity_tiers_split_by_popularity_share():
    popularity = np.array([50, 0, 30, 10, 10], dtype=np.float32)
    tiers = popularity_tiers(popularity, (0.5, 0.8))

    # Sorted: 50 (before 0.0), 30 (0.5), 10 (0.8), 10 (0.9), 0.
    assert tiers.tolist() == [0, 2, 1, 2, 2]
    assert popularity_tiers(np.zeros(3), (0.5, 0.8)).tolist() == [2, 2, 2]


def test_tie_order_same_for_every_scorer():
    result = evaluate_scorers(_context(), [ConstantScorer("zeros", value=0.0),
                                           ConstantScorer("fives", value=5.0)])
    zeros, fives = _rows(result, "zeros"), _rows(result, "fives")

    for slice_name, row in zeros.items():
        for metric in ("hr@1", "mrr", "recall@2", "ndcg@2", "coverage@2"):
            assert row[metric] == pytest.approx(fives[slice_name][metric], nan_ok=True)


def test_fallback_and_excluded_items_reported():
    # u9's only history item, artist:4, co-occurs with nothing: item-kNN falls
    # back to popularity, which ranks u9's positive artist:0 first.
    context = build_context(
        "artist", ["artist"], two_type_catalogue(),
        interactions(HISTORY + [("u9", "artist:4", 1)]),
        interactions([("u9", "artist:0", 1)], day=2),
        config=EvaluationConfig(ease_max_items=1),
    )
    result = evaluate_scorers(context, [ItemKNNScorer(), EASEScorer()])

    assert result.value("item-knn", "all", "mrr") == 1.0
    assert result.report["fallback_users"]["item-knn"] == 1
    assert result.report["excluded_items"]["ease"]["items_beyond_max_items"] == 2
    assert result.report["excluded_items"]["ease"]["test_positives_beyond_max_items"] == 0
    assert "item-knn" not in result.report["excluded_items"]


def test_popularity_tiers_count_distinct_users():
    # u1 repeats artist:0 five times, and two users have artist:1 once each.
    # By distinct users artist:1 leads; by interactions artist:0 would.
    history = [("u1", "artist:0", 1)] * 5 + [("u2", "artist:1", 1), ("u3", "artist:1", 1)]
    context = build_context("artist", ["artist"], two_type_catalogue(), interactions(history),
                            interactions([("u1", "artist:2", 1)], day=2))
    views = build_views(context)

    assert context.popularity[:2].tolist() == [1, 2]
    assert views["head"].counted.tolist() == [False, True, False, False, False]
    assert views["torso"].counted.tolist() == [True, False, False, False, False]
