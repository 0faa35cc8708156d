"""Assemble the PyG ``HeteroData`` of the co-interaction graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import HeteroData

from gfm.graph.cooccurrence import ItemPairs

RELATION = "co"

EdgeType = tuple[str, str, str]


@dataclass
class Catalog:
    """Catalog items in node order, with their node type and local index.

    Attributes:
        item_ids: ``[num_items]`` item ids in catalog order.
        node_types: the item types, sorted; a type's position is its
            ``type_idx``.
        type_idx: int64 ``[num_items]`` position of each item's type in
            ``node_types``.
        local_idx: int64 ``[num_items]`` index of each item among the nodes of
            its type, in catalog order.
    """

    item_ids: list[str]
    node_types: list[str]
    type_idx: np.ndarray
    local_idx: np.ndarray

    def ids_of_type(self, type_position: int) -> list[str]:
        """Return the item ids of one node type, in node order."""
        mask = self.type_idx == type_position
        return [self.item_ids[i] for i in np.flatnonzero(mask)]


def relation_key(edge_type: EdgeType) -> str:
    """Return the ``src__co__dst`` name PyG uses for an edge type."""
    return "__".join(edge_type)


def expected_edge_types(node_types: list[str]) -> list[EdgeType]:
    """Return every ``(t1, "co", t2)`` over ordered pairs of node types."""
    return [(src, RELATION, dst) for src in node_types for dst in node_types]


def assemble_hetero_data(
    catalog: Catalog, pairs: ItemPairs, features: np.ndarray | None
) -> HeteroData:
    """Build the graph: one node type per item type, symmetric ``co`` edges.

    Args:
        catalog: the catalog in node order.
        pairs: the kept undirected item pairs (catalog positions).
        features: float32 ``[num_items, dim]`` in catalog order, or None to
            leave ``x`` out.

    Returns:
        A ``HeteroData`` whose node type ``t`` has ``item_ids`` and
        ``num_nodes`` (and ``x`` of ``[num_nodes_t, dim]`` when features are
        given), and whose edge types ``(t1, "co", t2)`` each have
        ``edge_index`` (int64 ``[2, E]``, local indices), ``edge_weight``
        (float32 ``[E]``) and ``edge_count`` (int64 ``[E]``, exact at any
        co-count), sorted by source then target. Edge types without edges are
        left out.
    """
    data = HeteroData()
    for position, node_type in enumerate(catalog.node_types):
        mask = catalog.type_idx == position
        data[node_type].item_ids = catalog.ids_of_type(position)
        data[node_type].num_nodes = int(mask.sum())
        if features is not None:
            data[node_type].x = torch.from_numpy(
                np.ascontiguousarray(features[mask], dtype=np.float32)
            )

    # Orient each pair so its first end has the lower type position; a
    # relation and its reverse then come from the same rows.
    type_i = catalog.type_idx[pairs.item_i]
    type_j = catalog.type_idx[pairs.item_j]
    swap = type_i > type_j
    first = np.where(swap, pairs.item_j, pairs.item_i)
    second = np.where(swap, pairs.item_i, pairs.item_j)
    type_first = np.minimum(type_i, type_j)
    type_second = np.maximum(type_i, type_j)

    num_types = len(catalog.node_types)
    for a in range(num_types):
        for b in range(a, num_types):
            rows = np.flatnonzero((type_first == a) & (type_second == b))
            if rows.size == 0:
                continue
            src = catalog.local_idx[first[rows]]
            dst = catalog.local_idx[second[rows]]
            count = pairs.count[rows]
            weight = pairs.weight[rows]
            type_a, type_b = catalog.node_types[a], catalog.node_types[b]
            if a == b:
                _set_edges(
                    data,
                    (type_a, RELATION, type_a),
                    np.concatenate([src, dst]),
                    np.concatenate([dst, src]),
                    np.concatenate([count, count]),
                    np.concatenate([weight, weight]),
                )
            else:
                _set_edges(data, (type_a, RELATION, type_b), src, dst, count, weight)
                _set_edges(data, (type_b, RELATION, type_a), dst, src, count, weight)
    return data


def _set_edges(
    data: HeteroData,
    edge_type: EdgeType,
    src: np.ndarray,
    dst: np.ndarray,
    count: np.ndarray,
    weight: np.ndarray,
) -> None:
    # One int64 key sorts faster than np.lexsort over two arrays.
    order = np.argsort(
        src * np.int64(data[edge_type[2]].num_nodes) + dst, kind="stable"
    )
    store = data[edge_type]
    store.edge_index = torch.from_numpy(
        np.stack([src[order], dst[order]]).astype(np.int64)
    )
    store.edge_weight = torch.from_numpy(weight[order].astype(np.float32))
    store.edge_count = torch.from_numpy(count[order].astype(np.int64))
