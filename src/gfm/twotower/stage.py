"""The two-tower pipeline steps over artifact folders, callable without KFP.

:func:`train_product` trains one product from the Dataset, Split and
embedding folders and writes its :class:`ProductModel` folder;
:func:`export_products` packs product model folders into the serving bundle.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import pandas as pd

from gfm.data import Dataset
from gfm.data.splits import Split
from gfm.embeddings import ItemEmbeddings
from gfm.twotower.bundle import export_bundle
from gfm.twotower.config import TwoTowerConfig
from gfm.twotower.product_model import ProductModel
from gfm.twotower.train import train_two_tower

logger = logging.getLogger(__name__)

# Split parts a bundle may serve as histories; the test part never is.
HISTORY_PARTS = ("train", "valid")


def data_snapshot(dataset: Dataset, split: Split) -> dict[str, Any]:
    """Describe the data a model was trained on, for its model card.

    Returns:
        The dataset name, row counts, items per type and the split's
        protocols, settings and counts per part.
    """
    report = split.report
    return {
        "dataset": dataset.name,
        "items": len(dataset.items),
        "items_per_type": {str(k): int(v) for k, v in
                           dataset.items["item_type"].value_counts().sort_index().items()},
        "interactions": len(dataset.interactions),
        "users": None if dataset.users is None else len(dataset.users),
        "split": {
            "protocols": report.get("protocols"),
            "settings": report.get("settings"),
            "counts": report.get("counts"),
            "cold_items": len(split.cold_items),
        },
    }


def _load_embeddings(uri: str | os.PathLike | None, name: str) -> ItemEmbeddings | None:
    if not uri:
        return None
    embeddings = ItemEmbeddings.load(uri)
    logger.info("loaded %s embeddings: %d items, dim %d", name, len(embeddings),
                embeddings.dim)
    return embeddings


def train_product(
    dataset_uri: str | os.PathLike,
    split_uri: str | os.PathLike,
    llm_uri: str | os.PathLike | None,
    hgnn_uri: str | os.PathLike | None,
    product: str,
    item_types: Sequence[str],
    config: TwoTowerConfig,
    out_uri: str | os.PathLike,
) -> ProductModel:
    """Train one product's model from artifact folders and save it to ``out_uri``.

    Only the embeddings the settings use are read. The data snapshot of the
    model card is stored as ``metrics["data"]``.

    Args:
        dataset_uri: the Dataset folder (items, interactions, users).
        split_uri: the Split folder; ``train`` and ``valid`` are used.
        llm_uri: the LLM ``ItemEmbeddings`` folder, or ``None``.
        hgnn_uri: the HGNN ``ItemEmbeddings`` folder, or ``None``.
        product: the product name.
        item_types: the item types the product recommends.
        config: the two-tower settings.
        out_uri: the folder the :class:`ProductModel` is written to.

    Returns:
        The trained model.
    """
    dataset = Dataset.load(dataset_uri)
    split = Split.load(split_uri)
    needs_llm = config.use_llm or not config.use_hgnn
    model = train_two_tower(
        product=product,
        item_types=list(item_types),
        train=split.train,
        valid=split.valid,
        items=dataset.items,
        users=dataset.users,
        hgnn=_load_embeddings(hgnn_uri, "hgnn") if config.use_hgnn else None,
        llm=_load_embeddings(llm_uri, "llm") if needs_llm else None,
        config=config,
    )
    model.metrics["data"] = data_snapshot(dataset, split)
    model.save(out_uri)
    return model


def export_products(
    model_uris: Sequence[str | os.PathLike],
    dataset_uri: str | os.PathLike,
    split_uri: str | os.PathLike,
    llm_uri: str | os.PathLike | None,
    hgnn_uri: str | os.PathLike | None,
    model_version: str,
    out_uri: str | os.PathLike,
    history_parts: Sequence[str] = HISTORY_PARTS,
) -> dict[str, ProductModel]:
    """Write the serving bundle of saved product models.

    The bundle's histories are the split parts of ``history_parts``, its
    users the dataset's users table, and each model card's ``data`` entry
    the data snapshot.

    Args:
        model_uris: :class:`ProductModel` folders, one per product.
        dataset_uri: the Dataset folder.
        split_uri: the Split folder the models were trained on.
        llm_uri: the LLM ``ItemEmbeddings`` folder, or ``None``.
        hgnn_uri: the HGNN ``ItemEmbeddings`` folder, or ``None``.
        model_version: the version served models report.
        out_uri: the bundle folder.
        history_parts: the split parts served as known users' histories.
            The default, ``train`` and ``valid``, is the evaluation's
            default ``history_parts``, so a known user is served with the
            history their test figures were computed from.

    Returns:
        The exported models by product name.

    Raises:
        ValueError: if two folders hold models of the same product, or a
            history part is not ``train`` or ``valid``.
        gfm.twotower.bundle.BundleError: from :func:`export_bundle`.
    """
    unknown = [part for part in history_parts if part not in HISTORY_PARTS]
    if unknown or not history_parts:
        raise ValueError(f"history_parts={list(history_parts)} is invalid; use parts "
                         f"of {list(HISTORY_PARTS)}")
    products: dict[str, ProductModel] = {}
    for uri in model_uris:
        model = ProductModel.load(uri)
        if model.product in products:
            raise ValueError(
                f"two product models for product {model.product!r} (second at {uri}); "
                f"pass one model per product"
            )
        products[model.product] = model
    dataset = Dataset.load(dataset_uri)
    split = Split.load(split_uri)
    snapshot = data_snapshot(dataset, split)
    histories = pd.concat([getattr(split, part) for part in history_parts],
                          ignore_index=True)
    export_bundle(
        out_uri,
        products,
        histories=histories,
        users=dataset.users,
        hgnn=_load_embeddings(hgnn_uri, "hgnn"),
        llm=_load_embeddings(llm_uri, "llm"),
        model_version=model_version,
        model_cards={name: {"data": snapshot} for name in products},
    )
    return products
