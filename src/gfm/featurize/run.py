"""Featurize a catalog: render, reuse cached vectors, embed the rest, report."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from gfm import __version__, storage
from gfm.data.dataset import Dataset
from gfm.data.item_text import items_for_split
from gfm.data.schema import table_to_frame
from gfm.data.splits import Split
from gfm.embeddings import ItemEmbeddings
from gfm.featurize.cache import EmbeddingCache, cache_key
from gfm.featurize.catalog import CatalogTexts, prepare_texts
from gfm.featurize.config import FeaturizeConfig
from gfm.featurize.engine import create_engine
from gfm.featurize.models import ResolvedModel, resolve_model
from gfm.logging_setup import progress_enabled

logger = logging.getLogger(__name__)

ITEMS_FILE = "items.parquet"


@dataclass
class EmbedOutcome:
    """Result of an embedding backend for the texts it was given.

    Attributes:
        matrix: float32 ``[n, dim]`` L2-normalized rows, in input order.
        engine: name of the engine that produced them.
        load_seconds: seconds spent loading engines; None when loading
            overlaps embedding and is counted in ``embed_seconds`` (Ray).
        embed_seconds: seconds spent embedding, loading excluded unless
            ``load_seconds`` is None.
        extra: backend facts for the metadata (actor count, ...).
    """

    matrix: np.ndarray
    engine: str
    load_seconds: float | None
    embed_seconds: float
    extra: dict


EmbedBackend = Callable[[Sequence[str], ResolvedModel, FeaturizeConfig], EmbedOutcome]


def embed_in_process(
    texts: Sequence[str], model: ResolvedModel, config: FeaturizeConfig
) -> EmbedOutcome:
    """Embed ``texts`` with one engine in this process, ``batch_size`` at a time.

    Texts are sorted by length before batching, so each batch pads little.
    """
    started = time.monotonic()
    with create_engine(config, model) as engine:
        loaded = time.monotonic()
        order = np.argsort([len(t) for t in texts], kind="stable")
        matrix = np.zeros((len(texts), engine.dim), dtype=np.float32)
        starts = range(0, len(texts), config.batch_size)
        if progress_enabled():
            from tqdm import tqdm

            starts = tqdm(starts, desc="embedding batches", unit="batch")
        for start in starts:
            rows = order[start:start + config.batch_size]
            matrix[rows] = engine.embed([texts[row] for row in rows])
            logger.debug("embedded batch of %d texts at offset %d", len(rows), start)
        name = engine.name
    finished = time.monotonic()
    return EmbedOutcome(matrix=matrix, engine=name, load_seconds=loaded - started,
                        embed_seconds=finished - loaded, extra={})


def count_truncated(texts: Sequence[str], model: ResolvedModel) -> int:
    """Count texts longer than ``model.max_length`` tokens, special tokens
    included, which the engine's tokenizer truncates."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.path, local_files_only=True)
    lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
    return int(sum(length > model.max_length for length in lengths))


def _assemble(found: np.ndarray, cached: np.ndarray, outcome: EmbedOutcome | None) -> np.ndarray:
    """Merge cached rows (where ``found``) and new rows into ``[num_items, dim]``."""
    dim = outcome.matrix.shape[1] if outcome is not None else cached.shape[1]
    if found.any() and cached.shape[1] != dim:
        raise ValueError(
            f"cached embeddings have dim {cached.shape[1]} but the engine returns {dim}; "
            "delete the cache folder of this model"
        )
    matrix = np.zeros((len(found), dim), dtype=np.float32)
    if found.any():
        matrix[found] = cached
    if outcome is not None:
        matrix[~found] = outcome.matrix
    return matrix


def _round_seconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _metadata(config: FeaturizeConfig, catalog: CatalogTexts, model: ResolvedModel,
              dim: int, found: np.ndarray, outcome: EmbedOutcome | None,
              cache_counts: dict[str, int]) -> dict[str, Any]:
    embedded = int((~found).sum())
    embed_seconds = outcome.embed_seconds if outcome else 0.0
    return {
        "stage": "featurize",
        "model": model.name,
        "model_path": model.path,
        "model_fingerprint": model.fingerprint,
        "dim": dim,
        "max_length": model.max_length,
        "engine": outcome.engine if outcome else "none (every item reused from the cache)",
        "template_version": config.template_version,
        "templates": {t: config.templates[t] for t in sorted(catalog.items_per_type)},
        "items_per_type": catalog.items_per_type,
        "embedded": embedded,
        "reused": int(found.sum()),
        "truncated": count_truncated(catalog.texts, model),
        "missing_fields": catalog.missing_fields,
        "empty_texts": catalog.empty_texts,
        "load_seconds": _round_seconds(outcome.load_seconds) if outcome else 0.0,
        "embed_seconds": round(embed_seconds, 3),
        "items_per_second": round(embedded / embed_seconds, 1) if embed_seconds else None,
        "batch_size": config.batch_size,
        "cache_uri": config.cache_uri,
        **cache_counts,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "gfm_version": __version__,
        **(outcome.extra if outcome else {}),
    }


def _lookup_cache(
    config: FeaturizeConfig, model: ResolvedModel, keys: list[str]
) -> tuple[EmbeddingCache | None, np.ndarray, np.ndarray, dict[str, int]]:
    """Load the cache of ``config.cache_uri`` and look up ``keys``.

    Returns:
        The cache (None without ``cache_uri``), bool ``found [n]``, the
        float32 cached rows of the found keys, and the ``cache_invalid`` and
        ``cache_skipped_shards`` counts for the metadata.
    """
    counts = {"cache_invalid": 0, "cache_skipped_shards": 0}
    if not config.cache_uri:
        return None, np.zeros(len(keys), dtype=bool), np.zeros((0, 0), np.float32), counts
    cache = EmbeddingCache(config.cache_uri, model)
    cache.load()
    found, cached = cache.lookup(keys)
    counts["cache_invalid"] = cache.count_invalid(
        [key for key, hit in zip(keys, found) if not hit])
    counts["cache_skipped_shards"] = len(cache.skipped_shards)
    return cache, found, cached, counts


def featurize_with(
    items: pd.DataFrame, config: FeaturizeConfig, backend: EmbedBackend
) -> ItemEmbeddings:
    """Featurize ``items`` with the given embedding backend.

    :func:`featurize_items` and :func:`gfm.featurize.featurize_items_ray`
    call this with their backend, so the steps around embedding are shared.
    """
    started = time.monotonic()
    catalog = prepare_texts(items, config)
    logger.info("featurizing %d items (%s)", len(catalog.texts), catalog.items_per_type)
    model = resolve_model(config.model, config.max_length)

    keys = [cache_key(model, template, config.template_version, text)
            for template, text in zip(catalog.templates, catalog.texts)]
    cache, found, cached, cache_counts = _lookup_cache(config, model, keys)

    missing_rows = np.flatnonzero(~found)
    outcome = None
    if missing_rows.size:
        outcome = backend([catalog.texts[row] for row in missing_rows], model, config)
        dim = outcome.matrix.shape[1]
        if found.any() and cached.shape[1] != dim:
            # EmbeddingCache.load keeps rows of one dim only, so no cached row fits.
            logger.warning("embedding cache %s contains rows of dim %d but the engine "
                           "returns dim %d; embedding the %d cached items again; delete "
                           "that folder to stop this",
                           cache.uri, cached.shape[1], dim, int(found.sum()))
            cache_counts["cache_invalid"] += int(found.sum())
            found = np.zeros(len(keys), dtype=bool)
            cached = np.zeros((0, dim), np.float32)
            missing_rows = np.arange(len(keys))
            outcome = backend(catalog.texts, model, config)
        if cache is not None:
            cache.add([keys[row] for row in missing_rows], outcome.matrix)
    matrix = _assemble(found, cached, outcome)

    metadata = _metadata(config, catalog, model, matrix.shape[1], found, outcome,
                         cache_counts)
    metadata["total_seconds"] = round(time.monotonic() - started, 3)
    logger.info("featurized %d items in %.1f s: %d embedded (%d of them over an invalid "
                "cached row), %d reused, %d truncated, engine %s, %s items/s",
                len(matrix), metadata["total_seconds"], metadata["embedded"],
                metadata["cache_invalid"], metadata["reused"], metadata["truncated"],
                metadata["engine"], metadata["items_per_second"])
    return ItemEmbeddings(
        item_ids=items["item_id"].astype(str).tolist(),
        item_types=items["item_type"].astype(str).tolist(),
        matrix=matrix,
        metadata=metadata,
    )


def featurize_items(items: pd.DataFrame, config: FeaturizeConfig) -> ItemEmbeddings:
    """Embed every item of a catalog with an LLM, in this process.

    Args:
        items: items table in the schema of ``gfm.data.schema.ITEMS_SCHEMA``.
        config: featurize settings.

    Returns:
        float32 ``[num_items, dim]`` L2-normalized embeddings in the row
        order of ``items``, with metadata: model, dim, template version,
        engine, counts (embedded, reused, truncated, missing fields, empty
        texts) and items per second.

    Raises:
        ValueError: on an empty or invalid items table, duplicate item ids,
            an item type without a template, an empty text (unless
            ``config.empty_text="item_type"``) or a model that is not found.
    """
    return featurize_with(items, config, embed_in_process)


def featurize_dataset(
    dataset_uri: str, output_uri: str, config: FeaturizeConfig,
    split_uri: str | None = None,
) -> ItemEmbeddings:
    """Featurize the items of a dataset folder and save the result.

    Embeds on Ray when ``config.ray.enabled``, else in this process.

    Args:
        dataset_uri: dataset folder (local or ``gs://``) holding ``items.parquet``.
        output_uri: folder that receives the ``ItemEmbeddings`` files.
        config: featurize settings.
        split_uri: the dataset's split folder. With it, item tag text built
            from tag applications (Last.fm artists) uses only the training
            split (:func:`gfm.data.item_text.items_for_split`). Without it,
            ``items.parquet`` is embedded as stored, where that text is
            null.

    Returns:
        The saved embeddings; with ``split_uri`` their metadata has
        ``item_text``, the counts of tag applications used and left out.
    """
    item_text: dict[str, Any] | None = None
    if split_uri:
        items, item_text = items_for_split(Dataset.load(dataset_uri), Split.load(split_uri))
    else:
        items = table_to_frame(storage.read_table(storage.join(dataset_uri, ITEMS_FILE)))
    if config.ray.enabled:
        from gfm.featurize.distributed import featurize_items_ray

        embeddings = featurize_items_ray(items, config)
    else:
        embeddings = featurize_items(items, config)
    if item_text is not None:
        embeddings.metadata["item_text"] = item_text
    embeddings.save(output_uri)
    logger.info("wrote %d item embeddings to %s", len(embeddings), output_uri)
    return embeddings
