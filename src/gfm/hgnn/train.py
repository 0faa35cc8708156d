"""Train the HGNN on a graph folder and write the "HGNN" artifact layout.

``out_uri`` receives ``model/`` (``model.pt``, ``config.json``),
``embeddings/`` (``ItemEmbeddings`` of every catalog item, cold items
included) and ``metrics.json`` (per-epoch loss and validation metrics, the
split and the run's summary).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gfm import storage
from gfm.embeddings import ItemEmbeddings
from gfm.hgnn.artifacts import (
    HGNNModel,
    embed_items,
    find_warm_start,
    graph_info,
    save_model,
)
from gfm.hgnn.config import HGNNConfig
from gfm.hgnn.model import build_model

logger = logging.getLogger(__name__)

MODEL_DIR = "model"
EMBEDDINGS_DIR = "embeddings"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoint"


@dataclass
class HGNNResult:
    """The outputs of :func:`train_hgnn`.

    Args:
        embeddings: HGNN embeddings of every catalog item.
        metrics: the content of ``metrics.json``, with ``None`` for NaN and
            infinite values.
        checkpoint_uri: the last Ray Train checkpoint, to resume or
            warm-start from.
    """

    embeddings: ItemEmbeddings
    metrics: dict[str, Any]
    checkpoint_uri: str


def train_hgnn(
    graph_uri: str,
    out_uri: str,
    config: HGNNConfig,
    *,
    resume_from: str | None = None,
) -> HGNNResult:
    """Train the HGNN on the graph folder ``graph_uri`` and write ``out_uri``.

    Args:
        graph_uri: a folder in the "Graph" layout (``graph.pt``).
        out_uri: the output folder, local or ``gs://``.
        config: settings; ``config.launcher`` picks where Ray Train runs.
        resume_from: warm start: a Ray Train checkpoint folder, a model
            folder or a previous HGNN output folder whose weights initialize
            the network (epochs and optimizer start afresh).

    Returns:
        The embeddings, metrics and last checkpoint.

    Raises:
        ValueError: if the graph lacks what training needs, an epoch would
            train nothing, or a remote launcher is given local paths.
        FileNotFoundError: if ``resume_from`` contains no weights file.
        FileExistsError: if ``config.run_name`` names an existing run
            folder and ``config.resume_run`` is false.
    """
    if config.launcher == "local":
        return _train_with_ray(graph_uri, out_uri, config, resume_from)
    from gfm.hgnn.remote import train_on_cluster

    train_on_cluster(graph_uri, out_uri, config, resume_from)
    return read_result(out_uri)


def _train_with_ray(
    graph_uri: str, out_uri: str, config: HGNNConfig, resume_from: str | None
) -> HGNNResult:
    from gfm.graph import load_graph
    from gfm.hgnn.distributed import check_run_folder, ray_cluster, run_ray_training
    from gfm.hgnn.loop import check_training_data

    started = time.perf_counter()
    # Check the inputs before Ray starts, because inside the workers an error
    # would only surface after max_failures restarts of the worker group.
    data = load_graph(graph_uri).data
    check_training_data(data, config, warn=False)
    if resume_from:
        find_warm_start(resume_from)
    storage_path = config.storage_path or storage.join(out_uri, "ray")
    run_name = config.run_name or default_run_name()
    check_run_folder(storage_path, run_name, resume_run=config.resume_run)
    logger.info(
        "training the HGNN on %s into %s (run %s, warm start %s)",
        graph_uri,
        out_uri,
        run_name,
        resume_from,
    )
    with ray_cluster(config):
        run = run_ray_training(
            graph_uri,
            config,
            storage_path=storage_path,
            run_name=run_name,
            warm_start=resume_from,
        )
    train_time = time.perf_counter() - started

    state = run.state
    network = build_model(
        data.node_types,
        _model_edge_types(data),
        {t: int(data[t].x.shape[1]) for t in data.node_types},
        config,
    )
    network.load_state_dict(state.best_model_state or state.model_state)
    model = HGNNModel(network=network, config=config, graph_info=graph_info(data))
    save_model(model, storage.join(out_uri, MODEL_DIR))

    embeddings = embed_items(model, data)
    embeddings.metadata.update(graph_uri=str(graph_uri), best_epoch=state.best_epoch)
    embeddings.save(storage.join(out_uri, EMBEDDINGS_DIR))

    metrics = {
        "summary": _summary(state, config, train_time, time.perf_counter() - started),
        "history": state.history,
        "split": state.info.get("split", {}),
        "dropped_pairs": state.info.get("dropped_pairs", {}),
        "warm_start": {"uri": resume_from, **state.info.get("warm_start", {})},
        "checkpoint_uri": run.checkpoint_uri,
        "run_uri": run.run_uri,
        "graph": model.graph_info,
    }
    metrics = _finite(metrics)
    storage.write_json(storage.join(out_uri, METRICS_FILE), metrics)
    logger.info("wrote the HGNN outputs to %s", out_uri)
    return HGNNResult(
        embeddings=embeddings, metrics=metrics, checkpoint_uri=run.checkpoint_uri
    )


def default_run_name() -> str:
    """Return a new Ray Train run name, unique per call.

    The UTC time to the microsecond and 6 random hex digits keep two runs
    that start in the same second under one ``storage_path`` apart.
    """
    now = datetime.now(UTC)
    return f"hgnn-{now:%Y%m%d-%H%M%S-%f}-{secrets.token_hex(3)}"


def _model_edge_types(data) -> list:
    # The workers train on the message-passing graph of canonical relations
    # in both directions, which has the same edge types as the input graph.
    from gfm.hgnn.split import full_message_graph

    return full_message_graph(data).edge_types


def _summary(state, config: HGNNConfig, train_time: float, total_time: float) -> dict:
    last = state.history[-1] if state.history else {}
    best = next((h for h in state.history if h.get("epoch") == state.best_epoch), {})
    return {
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        "early_stopping_metric": config.early_stopping_metric,
        "best_score": state.best_score,
        "best_val_auc": best.get("val_auc"),
        "best_val_hr": best.get("val_hr"),
        "hr_k": config.hr_k,
        "stopped_early": state.stopped_early,
        "attempts": state.attempts,
        "final_train_loss": last.get("train_loss"),
        "num_workers": config.num_workers,
        "num_parameters": state.info.get("num_parameters"),
        "train_time_s": train_time,
        "total_time_s": total_time,
    }


def _finite(value: Any) -> Any:
    # JSON has no NaN or infinity; write them as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def keep_checkpoint(result: HGNNResult, dst_uri: str) -> HGNNResult:
    """Copy the last checkpoint of a run whose Ray run folder will be deleted.

    Args:
        result: the outcome of :func:`train_hgnn`.
        dst_uri: the folder to copy the checkpoint's files (``state.pt``)
            into, local or ``gs://``.

    Returns:
        ``result`` with ``checkpoint_uri`` and ``metrics["checkpoint_uri"]``
        set to ``dst_uri``, and ``metrics["run_uri"]`` set to ``None``
        because the run folder goes away.
    """
    storage.copy_tree(result.checkpoint_uri, dst_uri)
    metrics = dict(result.metrics, checkpoint_uri=dst_uri, run_uri=None)
    return dataclasses.replace(result, metrics=metrics, checkpoint_uri=dst_uri)


def read_result(out_uri: str) -> HGNNResult:
    """Read the outputs a finished run wrote below ``out_uri``."""
    metrics = storage.read_json(storage.join(out_uri, METRICS_FILE))
    return HGNNResult(
        embeddings=ItemEmbeddings.load(storage.join(out_uri, EMBEDDINGS_DIR)),
        metrics=metrics,
        checkpoint_uri=metrics.get("checkpoint_uri", ""),
    )
