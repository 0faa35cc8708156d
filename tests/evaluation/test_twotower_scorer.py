"""Tests of scoring trained two-tower models through the harness adapter."""

from __future__ import annotations

import numpy as np
import pytest

from gfm.evaluation.config import EvaluationConfig
from gfm.evaluation.context import build_context
from gfm.evaluation.harness import evaluate_scorers
from gfm.evaluation.stage import history_of
from gfm.evaluation.twotower_scorer import ProductModelScorer, two_tower_name
from gfm.twotower import ProductModel


@pytest.fixture(scope="module")
def context(movielens):
    split = movielens["split"]
    dataset = movielens["dataset"]
    return build_context("movies", ["movie"], dataset.items,
                         history_of(split, ("train", "valid")), split.test,
                         dataset.users, split.cold_items,
                         config=EvaluationConfig(num_threads=1))


def _subset(model: ProductModel, keep: int) -> ProductModel:
    return ProductModel(model.product, model.item_types, model.item_ids[:keep],
                        model.item_types_of_rows[:keep], model.item_vectors()[:keep],
                        model.popularity[:keep], model.user_tower, model.encoder,
                        model.config, model.metrics)


def test_product_model_scorer_matches_serving_scores(context, trained_models):
    model = trained_models["2t-hgnn"]
    scorer = ProductModelScorer(model)
    scorer.fit(context)
    user = context.eval_user_ids[0]
    scores = scorer.score([user])

    row = context.history[context.user_rows([user])[0]]
    history = [context.all_item_ids[c] for c in row.indices]
    features = context.users.set_index("user_id").loc[user].to_dict()
    expected = model.user_vectors([history], [features]) @ model.item_vectors().T
    order = [model.item_ids.index(i) for i in context.item_ids]
    np.testing.assert_allclose(scores[0], expected[0, order], rtol=1e-5, atol=1e-6)
    assert scorer.name == "2t-hgnn"
    assert scorer.missing_items == 0


def test_product_model_scorer_ranks_missing_items_last(context, trained_models):
    model = _subset(trained_models["2t-hgnn"], keep=1000)
    scorer = ProductModelScorer(model, name="partial")
    scorer.fit(context)
    scores = scorer.score(context.eval_user_ids[:3])

    present = np.isin(context.item_ids, model.item_ids)
    assert scorer.missing_items == context.num_items - 1000
    assert np.all(scores[:, ~present].max(axis=1) < scores[:, present].min(axis=1))
    result = evaluate_scorers(context, [scorer])
    assert result.report["missing_items"]["partial"] == scorer.missing_items


def test_product_model_scorer_rejects_other_product(movielens, trained_models):
    dataset = movielens["dataset"]
    items = dataset.items.assign(item_type="film")
    context = build_context("films", ["film"], items, movielens["split"].train,
                            movielens["split"].test)

    with pytest.raises(ValueError, match="trained for item types"):
        ProductModelScorer(trained_models["2t-hgnn"]).fit(context)


def test_two_tower_name_follows_hgnn_setting(trained_models):
    assert two_tower_name(trained_models["2t-hgnn"]) == "2t-hgnn"
    assert two_tower_name(trained_models["two-tower"]) == "two-tower"
