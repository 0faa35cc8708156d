"""The evaluation stage: read the pipeline's artifacts, evaluate, write the report.

:func:`evaluate_products` is the in-memory core (the benchmark runner calls
it too); :func:`evaluate_artifacts` reads the artifact folders of
``docs/architecture.md``, calls it and writes ``metrics.json``,
``report.md`` and ``report.html``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Sequence

import pandas as pd

from gfm.data.dataset import Dataset
from gfm.data.splits import Split
from gfm.embeddings import ItemEmbeddings
from gfm.evaluation.baselines import make_baselines
from gfm.evaluation.config import EvaluationConfig
from gfm.evaluation.context import build_context
from gfm.evaluation.harness import EvaluationResult, evaluate_scorers
from gfm.evaluation.report import excluded_item_notes, write_report
from gfm.evaluation.twotower_scorer import (
    TWO_TOWER_NO_HGNN,
    ProductModelScorer,
)

logger = logging.getLogger(__name__)

def history_of(split: Split, parts: Sequence[str]) -> pd.DataFrame:
    """Return the named split parts (``train``, ``valid``) concatenated."""
    return pd.concat([getattr(split, part) for part in parts], ignore_index=True)


def train_two_tower_baseline(model: Any, dataset: Dataset, split: Split,
                             llm: ItemEmbeddings) -> Any:
    """Train the two-tower baseline: the model's settings without HGNN inputs.

    Args:
        model: a trained ``gfm.twotower.ProductModel``, whose product, item
            types and settings are reused with ``use_hgnn=False`` and
            ``use_llm=True``.
        dataset: the dataset (items and users).
        split: the split the model was trained on.
        llm: LLM embeddings of every catalogue item.

    Returns:
        The baseline's ``ProductModel``.
    """
    from gfm.twotower import TwoTowerConfig, train_two_tower

    settings = dict(model.config.to_dict(), use_hgnn=False, use_llm=True)
    started = time.monotonic()
    baseline = train_two_tower(
        product=model.product, item_types=model.item_types, train=split.train,
        valid=split.valid, items=dataset.items, users=dataset.users, llm=llm,
        config=TwoTowerConfig.from_dict(settings),
    )
    logger.info("trained the two-tower baseline without HGNN inputs for product %s "
                "in %.1f s", model.product, time.monotonic() - started)
    return baseline


def evaluate_products(
    dataset: Dataset,
    split: Split,
    llm: ItemEmbeddings | None,
    hgnn: ItemEmbeddings | None,
    models: Sequence[Any],
    config: EvaluationConfig | None = None,
    baseline_models: dict[str, Any] | None = None,
) -> list[EvaluationResult]:
    """Evaluate each product's models and the configured baselines.

    Args:
        dataset: the dataset the split came from.
        split: the split; history is ``config.history_parts``, positives
            come from ``test``.
        llm: LLM embeddings, needed by ``llm-knn`` and ``two-tower``.
        hgnn: HGNN embeddings, needed by ``hgnn-knn``.
        models: trained ``ProductModel`` objects, one or more per product;
            each is reported as ``2t-hgnn`` or ``two-tower`` by its settings.
        config: evaluation settings.
        baseline_models: already trained two-tower baselines by product;
            the ``two-tower`` baseline of a product not in it is trained here.

    Returns:
        One result per product, in the order the models name them.

    Raises:
        ValueError: if no model is given, a baseline lacks its embeddings,
            or two models of one product share a report name.
    """
    config = config or EvaluationConfig()
    if not models:
        raise ValueError("no product models to evaluate; pass at least one ProductModel")
    embeddings = {name: e for name, e in (("llm", llm), ("hgnn", hgnn)) if e is not None}
    history = history_of(split, config.history_parts)
    baseline_models = dict(baseline_models or {})

    by_product: dict[str, list[Any]] = {}
    for model in models:
        by_product.setdefault(model.product, []).append(model)

    results = []
    for product, product_models in by_product.items():
        item_types = list(product_models[0].item_types)
        context = build_context(
            product, item_types, dataset.items, history, split.test, dataset.users,
            split.cold_items, embeddings, config,
        )
        scorers = make_baselines([b for b in config.baselines if b != TWO_TOWER_NO_HGNN])
        if TWO_TOWER_NO_HGNN in config.baselines and not any(
                not m.config.use_hgnn for m in product_models):
            if product not in baseline_models:
                if llm is None:
                    raise ValueError(
                        "the two-tower baseline needs the LLM embeddings; pass llm= or "
                        "remove 'two-tower' from baselines"
                    )
                baseline_models[product] = train_two_tower_baseline(
                    product_models[0], dataset, split, llm)
            scorers.append(ProductModelScorer(baseline_models[product]))
        scorers.extend(ProductModelScorer(m) for m in product_models)
        results.append(evaluate_scorers(context, scorers))
    return results


def evaluate_artifacts(
    dataset_uri: str | os.PathLike,
    split_uri: str | os.PathLike,
    llm_uri: str | os.PathLike | None,
    hgnn_uri: str | os.PathLike | None,
    model_uris: Sequence[str | os.PathLike],
    out_uri: str | os.PathLike,
    config: EvaluationConfig | None = None,
) -> dict[str, Any]:
    """Evaluate artifact folders and write the report below ``out_uri``.

    Args:
        dataset_uri: dataset folder (``items.parquet``, ...).
        split_uri: split folder.
        llm_uri: LLM ``ItemEmbeddings`` folder, or None.
        hgnn_uri: HGNN ``ItemEmbeddings`` folder, or None.
        model_uris: ``ProductModel`` folders.
        out_uri: where ``metrics.json``, ``report.md`` and ``report.html`` go.
        config: evaluation settings.

    Returns:
        The ``metrics.json`` document, ``deploy_gate`` included.
    """
    from gfm.twotower import ProductModel

    config = config or EvaluationConfig()
    started = time.monotonic()
    dataset = Dataset.load(dataset_uri)
    split = Split.load(split_uri)
    llm = ItemEmbeddings.load(llm_uri) if llm_uri else None
    hgnn = ItemEmbeddings.load(hgnn_uri) if hgnn_uri else None
    models = [ProductModel.load(uri) for uri in model_uris]
    logger.info("evaluating %d product models on dataset %s", len(models), dataset.name)

    results = evaluate_products(dataset, split, llm, hgnn, models, config)
    rows = [row for result in results for row in result.rows]
    slices = {name: text for result in results for name, text in result.slices.items()}
    extra = {
        "dataset": dataset.name,
        "split": split.report,
        "config": config.to_dict(),
        "timings": {r.product: r.timings for r in results},
        "counts": {r.product: r.report for r in results},
    }
    notes = excluded_item_notes({f"product {r.product}": r.report for r in results})
    document = write_report(out_uri, rows, extra, slices,
                            title=f"Evaluation on {dataset.name}", notes=notes)
    logger.info("wrote the evaluation of %d products to %s in %.1f s; deploy gate %s",
                len(results), out_uri, time.monotonic() - started,
                document["deploy_gate"])
    return document
