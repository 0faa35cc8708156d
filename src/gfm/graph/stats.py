"""Summaries of a built graph for ``stats.json``: nodes, edges and degrees."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch_geometric.data import HeteroData

from gfm.graph.hetero import relation_key

# Quantiles reported for every degree distribution.
QUANTILES = (0.5, 0.9, 0.99)


def degree_summary(degrees: np.ndarray) -> dict[str, Any]:
    """Summarize node degrees.

    Args:
        degrees: int64 ``[num_nodes]`` degree of each node.

    Returns:
        ``min``, ``max``, ``mean``, the quantiles ``p50``, ``p90``, ``p99``,
        and ``histogram``: node counts per power-of-two bucket, keyed
        ``"0"``, ``"1"``, ``"2-3"``, ``"4-7"`` and so on (empty buckets left
        out).
    """
    if degrees.size == 0:
        return {"min": 0, "max": 0, "mean": 0.0, "histogram": {}}
    summary: dict[str, Any] = {
        "min": int(degrees.min()),
        "max": int(degrees.max()),
        "mean": round(float(degrees.mean()), 4),
    }
    for quantile in QUANTILES:
        summary[f"p{round(quantile * 100)}"] = float(np.quantile(degrees, quantile))

    histogram: dict[str, int] = {}
    zeros = int((degrees == 0).sum())
    if zeros:
        histogram["0"] = zeros
    positive = degrees[degrees > 0]
    if positive.size:
        buckets = np.floor(np.log2(positive)).astype(np.int64)
        for bucket, count in zip(*np.unique(buckets, return_counts=True)):
            low, high = 2 ** int(bucket), 2 ** (int(bucket) + 1) - 1
            label = str(low) if low == high else f"{low}-{high}"
            histogram[label] = int(count)
    summary["histogram"] = histogram
    return summary


def node_degrees(data: HeteroData) -> dict[str, np.ndarray]:
    """Return each node type's degree over all its relations.

    Every edge is stored in both directions, so a node's out-degree (its
    appearances as a source) equals its degree.
    """
    degrees = {
        node_type: np.zeros(data[node_type].num_nodes, dtype=np.int64)
        for node_type in data.node_types
    }
    for edge_type in data.edge_types:
        src = data[edge_type].edge_index[0].numpy()
        degrees[edge_type[0]] += np.bincount(src, minlength=degrees[edge_type[0]].size)
    return degrees


def graph_summary(
    data: HeteroData, item_users: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Summarize nodes, edges, degrees and isolated nodes of a built graph.

    Args:
        data: the graph of :func:`gfm.graph.hetero.assemble_hetero_data`.
        item_users: per node type, int64 ``[num_nodes_t]`` number of users
            whose kept history contains each node's item.

    Returns:
        ``nodes``, ``edges`` (per relation, each direction counted),
        ``isolated_nodes`` and ``items_without_interactions`` (per node
        type), and ``degree``: a :func:`degree_summary` per node type over all
        its relations, and per relation of its source nodes.
    """
    degrees = node_degrees(data)
    relation_degrees = {}
    for edge_type in data.edge_types:
        src = data[edge_type].edge_index[0].numpy()
        size = data[edge_type[0]].num_nodes
        relation_degrees[relation_key(edge_type)] = degree_summary(
            np.bincount(src, minlength=size)
        )
    return {
        "nodes": {t: int(data[t].num_nodes) for t in data.node_types},
        "edges": {
            relation_key(t): int(data[t].edge_index.size(1)) for t in data.edge_types
        },
        "isolated_nodes": {t: int((d == 0).sum()) for t, d in degrees.items()},
        "items_without_interactions": {
            t: int((counts == 0).sum()) for t, counts in item_users.items()
        },
        "degree": {
            "node_types": {t: degree_summary(d) for t, d in degrees.items()},
            "relations": relation_degrees,
        },
    }
