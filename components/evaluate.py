"""KFP component that compares the product models with the baselines."""

# No "from __future__ import annotations": KFP reads the artifact types
# from the live annotations of the function signature.
from typing import List

from kfp import dsl

from gfm import settings


@dsl.component(base_image=settings.image("train"))
def evaluate(
    dataset: dsl.Input[dsl.Dataset],
    split: dsl.Input[dsl.Dataset],
    llm_embeddings: dsl.Input[dsl.Artifact],
    hgnn_embeddings: dsl.Input[dsl.Artifact],
    models: dsl.Input[List[dsl.Model]],
    config: dict,
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
    plot: dsl.Output[dsl.HTML],
):
    """Rank every product item for every test user with each model and baseline.

    ``models`` are the ``ProductModel`` folders of the pipeline's per-product
    loop. The baselines (popularity, item-kNN, EASE, LLM-kNN, HGNN-only and
    a two-tower model trained here without HGNN inputs) are computed on the
    same split. ``config`` contains ``EvaluationConfig`` settings (empty
    dict = defaults).

    ``metrics.path`` is a folder with ``metrics.json``, ``report.md`` and
    ``report.html``; ``metrics.json["deploy_gate"][product]["value"]`` is
    the 2T-HGNN HR@K (``K`` = ``hit_k``) on warm users, or null when the
    warm slice has no users. ``report.path`` and ``plot.path`` are the
    Markdown table and the HTML plot as single files, because the KFP UI
    renders those artifact types from one file. The gate figures are also
    logged as the metrics ``deploy_gate.<product>.hr@<K>_warm``, beside the
    evaluated users per product (``eval_users.<product>``). A null gate is
    not logged, because KFP metrics must be numbers, and a warning names
    the product.
    """
    import logging
    import os

    from gfm import storage
    from gfm.components import decode_parameter
    from gfm.evaluation.config import EvaluationConfig
    from gfm.evaluation.report import REPORT_HTML, REPORT_MD
    from gfm.evaluation.stage import evaluate_artifacts
    from gfm.logging_setup import configure_logging

    configure_logging()
    os.makedirs(metrics.path, exist_ok=True)
    document = evaluate_artifacts(
        dataset_uri=dataset.path,
        split_uri=split.path,
        llm_uri=llm_embeddings.path,
        hgnn_uri=hgnn_embeddings.path,
        model_uris=[model.path for model in models],
        out_uri=metrics.path,
        config=EvaluationConfig.from_dict(decode_parameter(config)),
    )
    storage.write_text(report.path, storage.read_text(os.path.join(metrics.path, REPORT_MD)))
    storage.write_text(plot.path, storage.read_text(os.path.join(metrics.path, REPORT_HTML)))

    logger = logging.getLogger("gfm.components.evaluate")
    for product, gate in document["deploy_gate"].items():
        name = f"deploy_gate.{product}.{gate['metric']}_{gate['slice']}"
        if gate["value"] is None:
            logger.warning(
                "not logging metric %s: the %s slice of product %s has no users, so "
                "the gate has no value and counts as failing", name, gate["slice"],
                product,
            )
            continue
        metrics.log_metric(name, gate["value"])
    for product, counts in document["counts"].items():
        metrics.log_metric(f"eval_users.{product}",
                           counts["context"]["counts"]["eval_users"])
    metrics.log_metric("rows", len(document["rows"]))

    products = sorted({row["product"] for row in document["rows"]})
    models_evaluated = sorted({row["model"] for row in document["rows"]})
    for artifact in (report, plot):
        artifact.metadata.update(products=products, models=models_evaluated,
                                 rows=len(document["rows"]))
