"""The trained model on storage, item embeddings of a graph, and checkpoints.

A model folder contains ``model.pt`` (the network's ``state_dict``) and
``config.json`` (the :class:`~gfm.hgnn.config.HGNNConfig`, the network's
constructor arguments and facts about the training graph). A Ray Train
checkpoint folder holds ``state.pt``, a :class:`~gfm.hgnn.loop.TrainState`
as plain containers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch_geometric.data import HeteroData

from gfm import storage
from gfm.embeddings import ItemEmbeddings
from gfm.hgnn.config import HGNNConfig
from gfm.hgnn.inference import embed_graph
from gfm.hgnn.model import HeteroGraphSAGE, upgrade_state_dict
from gfm.hgnn.split import full_message_graph

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
MODEL_CONFIG_FILE = "config.json"
STATE_FILE = "state.pt"


@dataclass
class HGNNModel:
    """A trained network with the settings it was trained and runs with.

    Args:
        network: the heterogeneous GraphSAGE.
        config: the run's settings; inference uses its fan-outs and chunk size.
        graph_info: facts about the training graph (node and edge counts,
            feature dimension) for provenance.
    """

    network: HeteroGraphSAGE
    config: HGNNConfig
    graph_info: dict[str, Any] = field(default_factory=dict)


def graph_info(data: HeteroData) -> dict[str, Any]:
    """Return node counts, edge counts and feature dimensions of a graph."""
    return {
        "nodes": {t: int(data[t].num_nodes) for t in data.node_types},
        "edges": {
            "__".join(e): int(data[e].edge_index.shape[1]) for e in data.edge_types
        },
        "feature_dims": {t: int(data[t].x.shape[1]) for t in data.node_types},
    }


def check_graph(data: HeteroData) -> None:
    """Check that ``data`` has what the HGNN reads from the "Graph" layout.

    Raises:
        ValueError: naming the node or edge type and the missing field.
    """
    if not data.node_types:
        raise ValueError(
            "the graph has no node types; build it with gfm.graph.build_graph"
        )
    for node_type in data.node_types:
        store = data[node_type]
        x = store.get("x")
        if x is None:
            raise ValueError(
                f"node type {node_type!r} has no features x: build the graph with the "
                "featurize stage's ItemEmbeddings (features=...)"
            )
        if x.dim() != 2 or not torch.is_floating_point(x):
            raise ValueError(
                f"node type {node_type!r} has x of shape {tuple(x.shape)} and dtype "
                f"{x.dtype}; expected float [num_nodes, dim]"
            )
        ids = store.get("item_ids")
        if ids is None or len(ids) != x.shape[0]:
            raise ValueError(
                f"node type {node_type!r} needs item_ids with one id per row of x "
                f"({x.shape[0]}), got {None if ids is None else len(ids)}"
            )
        if not torch.isfinite(x).all():
            raise ValueError(f"node type {node_type!r} has non-finite features")
    for edge_type in data.edge_types:
        edge_index = data[edge_type].get("edge_index")
        if edge_index is None or edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge type {edge_type} needs edge_index of shape [2, E]")
        if torch.is_floating_point(edge_index) or edge_index.dtype == torch.bool:
            raise ValueError(
                f"edge type {edge_type} has edge_index of dtype {edge_index.dtype}; "
                "node indices must be integers (torch.long)"
            )
        src, _, dst = edge_type
        if edge_index.numel() and (
            int(edge_index[0].max()) >= data[src].num_nodes
            or int(edge_index[1].max()) >= data[dst].num_nodes
            or int(edge_index.min()) < 0
        ):
            raise ValueError(f"edge type {edge_type} has node indices out of range")


def save_model(model: HGNNModel, uri: str | os.PathLike) -> None:
    """Write ``model.pt`` and ``config.json`` below the folder ``uri``."""
    storage.write_torch(storage.join(uri, MODEL_FILE), model.network.state_dict())
    storage.write_json(
        storage.join(uri, MODEL_CONFIG_FILE),
        {
            "hgnn_config": model.config.to_dict(),
            "network": model.network.hparams(),
            "graph": model.graph_info,
        },
    )
    logger.info("saved the HGNN model to %s", uri)


def load_model(uri: str | os.PathLike) -> HGNNModel:
    """Read a model folder written by :func:`save_model`.

    A ``model.pt`` saved with per-relation biases is converted on load
    (:func:`~gfm.hgnn.model.upgrade_state_dict`).

    Raises:
        FileNotFoundError: if ``model.pt`` or ``config.json`` is missing.
    """
    meta = storage.read_json(storage.join(uri, MODEL_CONFIG_FILE))
    network = HeteroGraphSAGE.from_hparams(meta["network"])
    weights = storage.read_torch(storage.join(uri, MODEL_FILE))
    network.load_state_dict(upgrade_state_dict(weights))
    network.eval()
    return HGNNModel(
        network=network,
        config=HGNNConfig.from_dict(meta["hgnn_config"]),
        graph_info=meta.get("graph", {}),
    )


def embed_items(model: HGNNModel, data: HeteroData) -> ItemEmbeddings:
    """Embed every node of ``data`` with the trained model.

    ``data`` may be the training graph or a newer one in the same layout:
    items added since training, and items without edges, are embedded from
    their features (and whatever edges they have) through the same network.
    Rows follow ``data.node_types``, then node order.

    Returns:
        ``ItemEmbeddings`` of ``[num_nodes, out_dim]`` unit-norm rows.

    Raises:
        ValueError: if the graph misses fields or has an unknown item type.
    """
    check_graph(data)
    graph = full_message_graph(data) if data.edge_types else data
    vectors = embed_graph(
        model.network,
        graph,
        fanouts=model.config.inference_fanouts,
        batch_size=model.config.embed_batch_size,
        seed=model.config.seed,
    )
    item_ids: list[str] = []
    item_types: list[str] = []
    matrices = []
    isolated: dict[str, int] = {}
    for node_type in data.node_types:
        item_ids += [str(i) for i in data[node_type].item_ids]
        item_types += [node_type] * int(data[node_type].num_nodes)
        matrices.append(vectors[node_type].cpu())
        isolated[node_type] = _count_isolated(graph, node_type)
    matrix = torch.cat(matrices).numpy()
    metadata = {
        "source": "hgnn",
        "model": "hetero-graphsage",
        "num_layers": model.network.num_layers,
        "inference_fanouts": model.config.inference_fanouts,
        "items_per_type": {t: int(data[t].num_nodes) for t in data.node_types},
        "items_without_edges": isolated,
        "normalized": True,
    }
    logger.info(
        "embedded %d items (%s without edges) into %d dimensions",
        len(item_ids),
        isolated,
        matrix.shape[1],
    )
    return ItemEmbeddings(item_ids, item_types, matrix, metadata)


def _count_isolated(graph: HeteroData, node_type: str) -> int:
    degree = torch.zeros(int(graph[node_type].num_nodes), dtype=torch.long)
    for edge_type in graph.edge_types:
        if edge_type[2] == node_type:
            degree += torch.bincount(
                graph[edge_type].edge_index[1], minlength=degree.numel()
            )
    return int((degree == 0).sum())


def read_state(uri: str | os.PathLike) -> dict[str, Any]:
    """Read ``state.pt`` of a checkpoint folder (local or ``gs://``)."""
    return storage.read_torch(storage.join(uri, STATE_FILE), weights_only=True)


def find_warm_start(uri: str) -> str:
    """Return the weights file that a warm start from ``uri`` reads.

    Args:
        uri: a Ray Train checkpoint folder (``state.pt``), a model folder
            (``model.pt``) or an HGNN output folder (``model/model.pt``).

    Raises:
        FileNotFoundError: if none of those files is below ``uri``.
    """
    candidates = [
        storage.join(uri, STATE_FILE),
        storage.join(uri, MODEL_FILE),
        storage.join(uri, "model", MODEL_FILE),
    ]
    for path in candidates:
        if storage.exists(path):
            return path
    raise FileNotFoundError(
        f"nothing to warm-start from at {uri}: expected {STATE_FILE} (a Ray Train "
        f"checkpoint), {MODEL_FILE} (a model folder) or model/{MODEL_FILE}; pass "
        "one of those folders as resume_from (--resume-from, warm_start_uri)"
    )


def warm_start_weights(uri: str) -> dict[str, torch.Tensor]:
    """Read the network weights of a previous run to warm-start from.

    Args:
        uri: a folder that :func:`find_warm_start` accepts; a checkpoint's
            best weights are used.

    Raises:
        FileNotFoundError: if none of the expected files is below ``uri``.
    """
    path = find_warm_start(uri)
    if path.endswith(STATE_FILE):
        state = storage.read_torch(path, weights_only=True)
        return state.get("best_model_state") or state["model_state"]
    return storage.read_torch(path)
