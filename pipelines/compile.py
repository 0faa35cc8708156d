"""Compile the pipeline to KFP IR YAML and map run settings to its arguments."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from gfm.components import encode_parameter
from gfm.pipelines.foundation import foundation_uris
from gfm.pipelines.placement import Placement
from gfm.pipelines.run_config import RunConfig

logger = logging.getLogger(__name__)


def pipeline_arguments(
    run_config: RunConfig,
    *,
    reuse_foundation: bool = False,
    foundation_uri: str | None = None,
    publish_foundation_uri: str | None = None,
) -> dict[str, Any]:
    """Return the pipeline's arguments for one run's settings.

    Each settings mapping is encoded with ``gfm.components.encode_parameter``
    (JSON text), because KFP rejects ``None`` in parameters and turns ints
    into floats; the components decode it.

    Args:
        run_config: the run settings (dataset, products, stage sections).
        reuse_foundation: import the LLM and HGNN embeddings published at
            ``foundation_uri`` and retrain only the two-tower models.
        foundation_uri: the published foundation layer to import (required
            with ``reuse_foundation``).
        publish_foundation_uri: where a full run publishes its foundation
            layer; None or empty to publish nothing.

    Raises:
        ValueError: if ``reuse_foundation`` is set without ``foundation_uri``.
    """
    if reuse_foundation and not foundation_uri:
        raise ValueError(
            "reuse_foundation needs foundation_uri: the location a full run "
            "published with publish_foundation_uri"
        )
    llm_uri, hgnn_uri = foundation_uris(foundation_uri) if foundation_uri else ("", "")
    # The templates are a parameter of their own, so a run can change them
    # without editing the encoded featurize settings.
    featurize = dict(run_config.featurize)
    templates = featurize.pop("templates", {})
    return encode_settings({
        "dataset_name": run_config.dataset["name"],
        "dataset_uri": run_config.dataset.get("uri") or "",
        "strict": bool(run_config.dataset.get("strict", False)),
        "dataset_options": dict(run_config.dataset.get("options") or {}),
        "products": [p.to_parameter() for p in run_config.products],
        "templates": dict(templates),
        "split_config": run_config.split,
        "featurize_config": featurize,
        "graph_config": run_config.graph,
        "hgnn_config": run_config.hgnn,
        "twotower_config": run_config.twotower,
        "evaluation_config": run_config.evaluation,
        "deploy_config": _deploy_settings(run_config),
        "reuse_foundation": reuse_foundation,
        "foundation_llm_uri": llm_uri,
        "foundation_hgnn_uri": hgnn_uri,
        "publish_foundation_uri": publish_foundation_uri or "",
    })


# Pipeline parameters that carry a settings mapping.
SETTINGS_PARAMETERS = (
    "dataset_options", "split_config", "featurize_config", "graph_config",
    "hgnn_config", "twotower_config", "evaluation_config", "deploy_config",
)


def encode_settings(arguments: dict[str, Any]) -> dict[str, Any]:
    """Return ``arguments`` with every settings mapping encoded for KFP."""
    return {
        name: encode_parameter(value)
        if name in SETTINGS_PARAMETERS and isinstance(value, dict) else value
        for name, value in arguments.items()
    }


def _deploy_settings(run_config: RunConfig) -> dict[str, Any]:
    # The deploy step builds the InferenceService from the serving section
    # too (model name, request limits), so it travels inside deploy_config.
    settings = dict(run_config.deploy)
    if run_config.serving:
        settings.setdefault("serving", dict(run_config.serving))
    return settings


def compile_pipeline(
    package_path: str | os.PathLike,
    *,
    run_config: RunConfig | None = None,
    placement: Placement | None = None,
    max_parallel_products: int = 4,
    cache_ingest: bool = False,
    arguments: dict[str, Any] | None = None,
) -> Path:
    """Compile the pipeline to an IR YAML file.

    Args:
        package_path: the ``.yaml`` file to write.
        run_config: settings whose values become the parameters' defaults;
            None keeps the built-in defaults.
        placement: cluster placement per step; None for a spec without
            resources, accelerators or Kubernetes settings.
        max_parallel_products: ``ParallelFor`` parallelism over products.
        cache_ingest: let the ingest step hit the cache (immutable dataset
            sources only).
        arguments: parameter defaults that replace those from
            ``run_config`` (for example ``{"reuse_foundation": True}``).

    Returns:
        The written path.
    """
    from kfp import compiler

    from gfm.pipelines.pipeline import build_pipeline

    start = time.perf_counter()
    pipeline = build_pipeline(
        placement, max_parallel_products=max_parallel_products, cache_ingest=cache_ingest
    )
    parameters = pipeline_arguments(run_config) if run_config is not None else {}
    parameters.update(encode_settings(arguments or {}))
    path = Path(package_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        pipeline_func=pipeline,
        package_path=str(path),
        pipeline_parameters=parameters or None,
    )
    logger.info(
        "compiled %s (%s placement, %d parameter defaults from %s) to %s in %.1f s",
        pipeline.name, "cluster" if placement else "no", len(parameters),
        run_config.source if run_config else "the built-in defaults", path,
        time.perf_counter() - start,
    )
    return path
