"""The evaluate KFP component, called through ``python_func``."""

from __future__ import annotations

import json

from kfp import dsl

from gfm.components.evaluate import evaluate

from .conftest import PRODUCT


def test_evaluate_component_writes_metrics_report_and_plot(tmp_path, movielens,
                                                           trained_models):
    movielens["dataset"].save(tmp_path / "dataset")
    movielens["split"].save(tmp_path / "split")
    movielens["llm"].save(tmp_path / "llm")
    movielens["hgnn"].save(tmp_path / "hgnn")
    trained_models["2t-hgnn"].save(tmp_path / "model-movies")
    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={})
    report = dsl.Markdown(name="report", uri=str(tmp_path / "report.md"), metadata={})
    plot = dsl.HTML(name="plot", uri=str(tmp_path / "report.html"), metadata={})

    evaluate.python_func(
        dataset=dsl.Dataset(name="dataset", uri=str(tmp_path / "dataset"), metadata={}),
        split=dsl.Dataset(name="split", uri=str(tmp_path / "split"), metadata={}),
        llm_embeddings=dsl.Artifact(name="llm", uri=str(tmp_path / "llm"), metadata={}),
        hgnn_embeddings=dsl.Artifact(name="hgnn", uri=str(tmp_path / "hgnn"), metadata={}),
        models=[dsl.Model(name="model", uri=str(tmp_path / "model-movies"), metadata={})],
        config={"baselines": ["popularity", "ease"], "num_threads": 1},
        metrics=metrics, report=report, plot=plot,
    )

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
