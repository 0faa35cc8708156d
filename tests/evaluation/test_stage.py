"""Tests of the evaluation stage on a real MovieLens-1M slice and trained models."""

from __future__ import annotations

import json
import math

import pytest

from gfm.evaluation.config import EvaluationConfig
from gfm.evaluation.stage import evaluate_artifacts, evaluate_products, history_of

from .conftest import PRODUCT

NO_TRAINING = ["popularity", "item-knn", "ease", "llm-knn", "hgnn-knn"]


def test_evaluate_products_compares_every_model(movielens, trained_models):
    results = evaluate_products(
        movielens["dataset"], movielens["split"], movielens["llm"], movielens["hgnn"],
        [trained_models["2t-hgnn"]],
        EvaluationConfig(positive_min_weight=4.0, num_threads=1),
        baseline_models={PRODUCT: trained_models["two-tower"]},
    )

    assert [r.product for r in results] == [PRODUCT]
    result = results[0]
    models = list(dict.fromkeys(row["model"] for row in result.rows))
    assert models == NO_TRAINING + ["two-tower", "2t-hgnn"]
    warm = {row["model"]: row for row in result.rows if row["slice"] == "warm"}
    assert warm["2t-hgnn"]["num_users"] > 200
    assert len({row["num_users"] for row in warm.values()}) == 1
    for row in warm.values():
        assert 0.0 <= row["hr@10"] <= 1.0
    # Any model with real signal beats ranking at random over ~3,700 movies.
    assert warm["ease"]["hr@10"] > 0.05
    assert warm["2t-hgnn"]["hr@10"] > 0.02
    cold = {row["model"]: row for row in result.rows
            if row["slice"] == "cold_items_among_cold"}
    assert cold["popularity"]["num_users"] > 10
    test = movielens["split"].test
    assert result.timings["2t-hgnn"]["users"] == test.loc[test["weight"] >= 4.0,
                                                          "user_id"].nunique()
    assert result.report["fallback_users"]["ease"] == 0


def test_evaluate_products_trains_two_tower_baseline(movielens, trained_models):
    results = evaluate_products(
        movielens["dataset"], movielens["split"], movielens["llm"], None,
        [trained_models["2t-hgnn"]],
        EvaluationConfig(baselines=("popularity", "two-tower"), batch_size=128,
                         num_threads=1),
    )
    models = list(dict.fromkeys(row["model"] for row in results[0].rows))

    assert models == ["popularity", "two-tower", "2t-hgnn"]
    assert not math.isnan(results[0].value("two-tower", "warm", "mrr"))


def test_evaluate_products_rejects_missing_inputs(movielens, trained_models):
    with pytest.raises(ValueError, match="no product models"):
        evaluate_products(movielens["dataset"], movielens["split"], None, None, [])
    with pytest.raises(ValueError, match="'hgnn' item embeddings"):
        evaluate_products(movielens["dataset"], movielens["split"], movielens["llm"],
                          None, [trained_models["2t-hgnn"]],
                          EvaluationConfig(baselines=("hgnn-knn",)))


def test_history_of_concatenates_parts(movielens):
    split = movielens["split"]

    assert len(history_of(split, ["train"])) == len(split.train)
    assert len(history_of(split, ["train", "valid"])) == len(split.train) + len(split.valid)


def test_evaluate_artifacts_writes_report_and_gate(tmp_path, movielens, trained_models):
    paths = {name: tmp_path / name for name in ("dataset", "split", "llm", "hgnn",
                                                "model", "out")}
    movielens["dataset"].save(paths["dataset"])
    movielens["split"].save(paths["split"])
    movielens["llm"].save(paths["llm"])
    movielens["hgnn"].save(paths["hgnn"])
    trained_models["2t-hgnn"].save(paths["model"])

    document = evaluate_artifacts(
        paths["dataset"], paths["split"], paths["llm"], paths["hgnn"], [paths["model"]],
        paths["out"], EvaluationConfig(baselines=tuple(NO_TRAINING), num_threads=1),
    )

    written = json.loads((paths["out"] / "metrics.json").read_text())
    gate = written["deploy_gate"][PRODUCT]
    assert gate["model"] == "2t-hgnn"
    assert gate["slice"] == "warm"
    assert gate["value"] == document["deploy_gate"][PRODUCT]["value"]
    assert written["dataset"] == "movielens-1m-slice"
    assert written["split"]["cold_items"]["count"] > 0
    assert written["config"]["baselines"] == NO_TRAINING
    assert "## movies, slice `warm`" in (paths["out"] / "report.md").read_text()
    assert (paths["out"] / "report.html").stat().st_size > 1000
