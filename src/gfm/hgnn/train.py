"""Train the HGNN on a graph folder and write the "HGNN" artifact layout.

``out_uri`` receives ``model/`` (``model.pt``, ``config.json``),
``embeddings/`` (``ItemEmbeddings`` of every catalog item, cold items
included) and ``metrics.json`` (per-epoch loss and validation metrics, the
split and the run's summary).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from gfm import settings, storage
from gfm.embeddings import ItemEmbeddings
from gfm.hgnn import kuberay
from gfm.hgnn.artifacts import (
    HGNNModel,
    check_graph,
    embed_items,
    graph_info,
    save_model,
)
from gfm.hgnn.config import HGNNConfig
from gfm.hgnn.model import build_model

logger = logging.getLogger(__name__)

MODEL_DIR = "model"
EMBEDDINGS_DIR = "embeddings"
METRICS_FILE = "metrics.json"


@dataclass
class HGNNResult:
    """The outputs of :func:`train_hgnn`.

    Args:
        embeddings: HGNN embeddings of every catalog item.
        metrics: the content of ``metrics.json``.
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
        ValueError: if the graph lacks what training needs, or a remote
            launcher is given local paths.
    """
    if config.launcher == "local":
        return _train_with_ray(graph_uri, out_uri, config, resume_from)
    return _train_on_cluster(graph_uri, out_uri, config, resume_from)


def _train_with_ray(
    graph_uri: str, out_uri: str, config: HGNNConfig, resume_from: str | None
) -> HGNNResult:
    from gfm.graph import load_graph
    from gfm.hgnn.distributed import ray_cluster, run_ray_training

    started = time.perf_counter()
    data = load_graph(graph_uri).data
    check_graph(data)
    storage_path = config.storage_path or storage.join(out_uri, "ray")
    run_name = config.run_name or time.strftime("hgnn-%Y%m%d-%H%M%S", time.gmtime())
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
    storage.write_json(storage.join(out_uri, METRICS_FILE), _finite(metrics))
    logger.info("wrote the HGNN outputs to %s", out_uri)
    return HGNNResult(
        embeddings=embeddings, metrics=metrics, checkpoint_uri=run.checkpoint_uri
    )


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


def read_result(out_uri: str) -> HGNNResult:
    """Read the outputs a finished run wrote below ``out_uri``."""
    metrics = storage.read_json(storage.join(out_uri, METRICS_FILE))
    return HGNNResult(
        embeddings=ItemEmbeddings.load(storage.join(out_uri, EMBEDDINGS_DIR)),
        metrics=metrics,
        checkpoint_uri=metrics.get("checkpoint_uri", ""),
    )


def _train_on_cluster(
    graph_uri: str, out_uri: str, config: HGNNConfig, resume_from: str | None
) -> HGNNResult:
    for name, uri in (("graph_uri", graph_uri), ("out_uri", out_uri)):
        if not storage.is_gcs(uri):
            raise ValueError(
                f"launcher {config.launcher!r} runs on a Ray cluster that cannot read "
                f"the local path {name}={uri!r}; pass gs:// URIs or use launcher 'local'"
            )
    cluster = config.cluster
    job_config = config.to_dict()
    job_config.pop("cluster")
    entrypoint = kuberay.train_entrypoint(graph_uri, out_uri, job_config, resume_from)

    if config.launcher == "rayjob":
        body = kuberay.build_rayjob(
            kuberay.rayjob_name(cluster.name_prefix),
            entrypoint,
            cluster,
            image=cluster.image or settings.image("train"),
            use_gpu=config.use_gpu,
        )
        api = kuberay.custom_objects_api()
        name = kuberay.submit_rayjob(body, api)
        kuberay.wait_for_rayjob(
            name,
            cluster.namespace,
            api,
            timeout_s=cluster.timeout_s,
            poll_interval_s=cluster.poll_interval_s,
        )
    else:
        if not cluster.address:
            raise ValueError(
                "launcher 'job-submission' needs cluster.address, the dashboard "
                "address of a running RayCluster (http://HOST:8265)"
            )
        # A running cluster's containers lack cluster.env, so it travels
        # in the job's runtime environment.
        runtime_env = {"env_vars": dict(cluster.env)} if cluster.env else None
        client, job_id = kuberay.submit_ray_job(
            cluster.address, entrypoint, runtime_env=runtime_env
        )
        kuberay.wait_for_ray_job(
            client,
            job_id,
            timeout_s=cluster.timeout_s,
            poll_interval_s=cluster.poll_interval_s,
        )
    return read_result(out_uri)
