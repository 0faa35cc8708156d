"""The evaluate KFP component, called through ``python_func``."""

from __future__ import annotations

import json

from kfp import dsl

from gfm.components.evaluate import evaluate

from .conftest import PRODUCT


def _run_component(tmp_path, models, config):
    """Call the component on the artifact folders below ``tmp_path``; return its outputs."""
    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={})
    report = dsl.Markdown(name="report", uri=str(tmp_path / "report.md"), metadata={})
    plot = dsl.HTML(name="plot", uri=str(tmp_path / "report.html"), metadata={})
    evaluate.python_func(
        dataset=dsl.Dataset(name="dataset", uri=str(tmp_path / "dataset"), metadata={}),
        split=dsl.Dataset(name="split", uri=str(tmp_path / "split"), metadata={}),
        llm_embeddings=dsl.Artifact(name="llm", uri=str(tmp_path / "llm"), metadata={}),
        hgnn_embeddings=dsl.Artifact(name="hgnn", uri=str(tmp_path / "hgnn"), metadata={}),
        models=models, config=config, metrics=metrics, report=report, plot=plot,
    )
    return metrics, report, plot


def test_evaluate_component_writes_metrics_report_and_plot(tmp_path, movielens,
                                                           trained_models):
    movielens["dataset"].save(tmp_path / "dataset")
    movielens["split"].save(tmp_path / "split")
    movielens["llm"].save(tmp_path / "llm")
    movielens["hgnn"].save(tmp_path / "hgnn")
    trained_models["2t-hgnn"].save(tmp_path / "model-movies")
    metrics, report, plot = _run_component(
        tmp_path, models=[dsl.Model(name="model", uri=str(tmp_path / "model-movies"),
                                    metadata={})],
        config={"baselines": ["popularity", "ease"], "num_threads": 1})

    document = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    gate = document["deploy_gate"][PRODUCT]["value"]
    assert metrics.metadata[f"deploy_gate.{PRODUCT}.hr@10_warm"] == gate
    assert metrics.metadata[f"eval_users.{PRODUCT}"] == \
        document["counts"][PRODUCT]["context"]["counts"]["eval_users"]
    assert metrics.metadata["rows"] == len(document["rows"])
    assert report.metadata["models"] == ["2t-hgnn", "ease", "popularity"]
    assert plot.metadata["products"] == [PRODUCT]
    assert (tmp_path / "report.md").read_text().startswith("# Evaluation on movielens-1m-slice")
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()


def _strict_json(text):
    def reject(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=reject)


def test_evaluate_component_skips_null_gate(tmp_path, monkeypatch, capfd):
    # The warm slice of "movies" has no users, so its gate is NaN; "tags" has a
    # figure. hit_k is 5, so the gate metric is hr@5.
    from gfm.evaluation import stage
    from gfm.evaluation.report import write_report

    rows = [
        {"product": "movies", "model": "2t-hgnn", "slice": "warm", "view": "full",
         "num_users": 0, "hr@5": float("nan"), "mrr": float("nan")},
        {"product": "tags", "model": "2t-hgnn", "slice": "warm", "view": "full",
         "num_users": 3, "hr@5": 0.5, "mrr": 0.25},
    ]
    counts = {product: {"context": {"counts": {"eval_users": 3}}}
              for product in ("movies", "tags")}

    def fake_evaluate_artifacts(**arguments):
        return write_report(arguments["out_uri"], rows, extra={"counts": counts})

    monkeypatch.setattr(stage, "evaluate_artifacts", fake_evaluate_artifacts)
    metrics, _, _ = _run_component(tmp_path, models=[], config={})

    document = _strict_json((tmp_path / "metrics" / "metrics.json").read_text())
    assert document["deploy_gate"]["movies"]["value"] is None
    assert document["rows"][0]["hr@5"] is None
    assert "deploy_gate.movies.hr@5_warm" not in metrics.metadata
    assert metrics.metadata["deploy_gate.tags.hr@5_warm"] == 0.5
    assert "not logging metric deploy_gate.movies.hr@5_warm" in capfd.readouterr().err
