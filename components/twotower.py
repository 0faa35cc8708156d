"""KFP components of the two-tower stage: train one product, export the bundle."""

# No "from __future__ import annotations": KFP reads the artifact types
# from the live annotations of the function signature.
from typing import List

from kfp import dsl

from gfm import settings


@dsl.component(base_image=settings.image("train"))
def train_two_tower(
    dataset: dsl.Input[dsl.Dataset],
    split: dsl.Input[dsl.Dataset],
    llm_embeddings: dsl.Input[dsl.Artifact],
    hgnn_embeddings: dsl.Input[dsl.Artifact],
    product: str,
    item_types: list,
    model: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
    config: dict = {},
):
    """Train the two-tower model of ONE product; the pipeline loops over products.

    Reads the Dataset folder ``dataset``, the ``train`` and ``valid`` parts
    of ``split`` and the ``ItemEmbeddings`` folders ``llm_embeddings`` and
    ``hgnn_embeddings`` (each only when the settings use it). ``config`` is
    the ``twotower`` section of the run's settings without ``products``
    (``TwoTowerConfig.from_dict``; empty means defaults). ``model`` receives
    the ``ProductModel`` folder. ``metrics`` gets the best valid Recall@K
    and the popularity baseline's, the epochs run, throughput, counts and
    every dropped row or item by reason. ``model.metadata`` gets the product,
    its item types, the vector dimension and the same recall figures.
    """
    from gfm.components import decode_parameter
    from gfm.logging_setup import configure_logging
    from gfm.twotower.config import TwoTowerConfig
    from gfm.twotower.stage import train_product

    configure_logging()
    trained = train_product(
        dataset_uri=dataset.path,
        split_uri=split.path,
        llm_uri=llm_embeddings.path,
        hgnn_uri=hgnn_embeddings.path,
        product=product,
        item_types=list(item_types),
        config=TwoTowerConfig.from_dict(decode_parameter(config)),
        out_uri=model.path,
    )

    results = trained.metrics
    values = {
        "best_valid_recall": results["best_valid_recall"],
        "popularity_valid_recall": results["popularity_valid_recall"],
        "best_epoch": results["best_epoch"],
        "epochs": len(results["epochs"]),
        "train_seconds": results["train_seconds"],
        "examples_per_second": results["examples_per_second"],
    }
    for name in ("items", "users", "train_pairs", "valid_users", "valid_pairs"):
        values[name] = results["counts"][name]
    for reason, count in results["dropped"].items():
        values[f"dropped_{reason}"] = count
    for name, value in values.items():
        if value is not None:
            metrics.log_metric(name, value)
    model.metadata.update(
        product=trained.product,
        item_types=trained.item_types,
        dim=trained.dim,
        items=len(trained.item_ids),
        history_source=trained.encoder.source,
        eval_k=results["eval_k"],
        best_valid_recall=results["best_valid_recall"],
        popularity_valid_recall=results["popularity_valid_recall"],
    )


@dsl.component(base_image=settings.image("train"))
def export_bundle(
    models: dsl.Input[List[dsl.Model]],
    dataset: dsl.Input[dsl.Dataset],
    split: dsl.Input[dsl.Dataset],
    llm_embeddings: dsl.Input[dsl.Artifact],
    hgnn_embeddings: dsl.Input[dsl.Artifact],
    model_version: str,
    bundle: dsl.Output[dsl.Model],
    evaluation_config: dict = {},
):
    """Pack the product models of the loop into one serving bundle.

    ``models`` are the ``ProductModel`` folders collected from the
    per-product loop (``dsl.Collected``). The bundle's histories are the
    parts of ``split`` that the evaluation treats as history
    (``history_parts`` of ``evaluation_config``, default ``train`` and
    ``valid``), so known users are served with the history they were
    evaluated with. Its user features come from ``dataset``. Both embedding
    folders are copied as they are, and each model card records the data
    snapshot. ``bundle`` receives the folder in the layout of
    ``gfm.twotower.bundle``; its metadata gets the product names, the
    model and format versions, the catalog size and the history parts.
    """
    from gfm.components import decode_parameter
    from gfm.evaluation.config import EvaluationConfig
    from gfm.logging_setup import configure_logging
    from gfm.twotower.bundle import BUNDLE_FORMAT_VERSION
    from gfm.twotower.stage import export_products

    configure_logging()
    history_parts = EvaluationConfig.from_dict(
        decode_parameter(evaluation_config)).history_parts
    products = export_products(
        model_uris=[m.path for m in models],
        dataset_uri=dataset.path,
        split_uri=split.path,
        llm_uri=llm_embeddings.path,
        hgnn_uri=hgnn_embeddings.path,
        model_version=model_version,
        out_uri=bundle.path,
        history_parts=history_parts,
    )
    bundle.metadata.update(
        products=sorted(products),
        model_version=model_version,
        format_version=BUNDLE_FORMAT_VERSION,
        items_per_product={name: len(m.item_ids) for name, m in products.items()},
        history_parts=list(history_parts),
    )
