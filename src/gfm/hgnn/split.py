"""Split the co-interaction edges into training and validation edges.

The graph stores every undirected co-interaction twice: ``(t1, "co", t2)``
and its reverse ``(t2, "co", t1)``, or both directions inside ``(t, "co",
t)``. Link prediction works on undirected pairs, one *relation* per unordered
pair of item types, so that a held-out pair leaves the message-passing graph
in both directions. Otherwise its reverse edge would reveal the held-out
pair to the network. A relation
is keyed by its canonical edge type: ``(t1, "co", t2)`` with ``t1 <= t2``,
and pairs inside ``(t, "co", t)`` are kept with ``src < dst``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType

logger = logging.getLogger(__name__)


def canonical_relations(data: HeteroData) -> list[EdgeType]:
    """Return the canonical edge type of each relation in ``data``.

    Raises:
        ValueError: if an edge type between two different node types has no
            reverse edge type, since the graph layout requires both.
    """
    relations = []
    for edge_type in data.edge_types:
        src, rel, dst = edge_type
        if src > dst:
            continue
        if src != dst and (dst, rel, src) not in data.edge_types:
            raise ValueError(
                f"edge type {edge_type} has no reverse {(dst, rel, src)}; the graph "
                "must store both directions of every edge (rebuild it with gfm.graph)"
            )
        relations.append(edge_type)
    return sorted(relations)


def undirected_pairs(data: HeteroData, relation: EdgeType) -> tuple[Tensor, Counter]:
    """Return each undirected pair of ``relation`` once, as ``[2, num_pairs]``.

    Pairs of a same-type relation keep ``src < dst``; self-loops and
    duplicate pairs are dropped and counted by reason. Between two types the
    pairs come from the canonical edge type, and pairs that only its reverse
    edge type stores are counted as ``reverse_only``.

    Raises:
        ValueError: if ``edge_index`` holds floats.
    """
    src_type, _, dst_type = relation
    edge_index = data[relation].edge_index
    if torch.is_floating_point(edge_index):
        raise ValueError(
            f"edge type {relation} has edge_index of dtype {edge_index.dtype}; node "
            "indices must be integers (torch.long), not truncated floats"
        )
    edge_index = edge_index.long()
    dropped: Counter = Counter()
    if src_type == dst_type:
        loops = edge_index[0] == edge_index[1]
        dropped["self_loop"] += int(loops.sum())
        edge_index = edge_index[:, ~loops]
        low = torch.minimum(edge_index[0], edge_index[1])
        high = torch.maximum(edge_index[0], edge_index[1])
        edge_index = torch.stack([low, high])
    num_dst = max(int(data[dst_type].num_nodes), 1)
    keys = edge_index[0] * num_dst + edge_index[1]
    unique_keys = torch.unique(keys)
    if src_type == dst_type:
        # Each pair appears once per direction in a symmetric graph; only
        # copies beyond those two count as duplicates.
        dropped["duplicate"] += max(int(keys.numel()) - 2 * int(unique_keys.numel()), 0)
    else:
        dropped["duplicate"] += int(keys.numel()) - int(unique_keys.numel())
        dropped["reverse_only"] += _count_reverse_only(data, relation, unique_keys)
    pairs = torch.stack([unique_keys // num_dst, unique_keys % num_dst])
    return pairs, dropped


def _count_reverse_only(
    data: HeteroData, relation: EdgeType, forward_keys: Tensor
) -> int:
    # The graph layout stores every pair in both directions, so a pair of the
    # reverse edge type alone means the graph was built or edited wrongly.
    src_type, rel, dst_type = relation
    reverse = data[(dst_type, rel, src_type)].edge_index.long()
    num_dst = max(int(data[dst_type].num_nodes), 1)
    reverse_keys = torch.unique(reverse[1] * num_dst + reverse[0])
    return int((~torch.isin(reverse_keys, forward_keys)).sum())


@dataclass
class LinkSplit:
    """Training and validation pairs per relation, and the training graph.

    Args:
        relations: canonical edge types, one per relation.
        train_pairs: ``[2, num_train]`` local node indices per relation.
        valid_pairs: ``[2, num_valid]`` local node indices per relation.
        message_graph: the graph without validation pairs, both directions
            of every training pair, ``x`` of every node type.
        dropped: pairs left out by reason (``self_loop``, ``duplicate``).
    """

    relations: list[EdgeType]
    train_pairs: dict[EdgeType, Tensor]
    valid_pairs: dict[EdgeType, Tensor]
    message_graph: HeteroData
    dropped: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """Return training and validation pairs per relation, for reports."""
        return {
            relation_name(r): {
                "train": int(self.train_pairs[r].shape[1]),
                "valid": int(self.valid_pairs[r].shape[1]),
            }
            for r in self.relations
        }


def relation_name(relation: EdgeType) -> str:
    """Return ``"src__rel__dst"``, the key of a relation in JSON reports."""
    return "__".join(relation)


def message_passing_graph(
    data: HeteroData, pairs: dict[EdgeType, Tensor]
) -> HeteroData:
    """Build a graph with both directions of each pair and the node features.

    Args:
        data: the source of the node types, ``x`` and ``item_ids``.
        pairs: ``[2, num_pairs]`` undirected pairs per canonical relation.
    """
    graph = HeteroData()
    for node_type in data.node_types:
        graph[node_type].x = data[node_type].x
        graph[node_type].num_nodes = int(data[node_type].num_nodes)
    for relation, edge_index in pairs.items():
        src_type, rel, dst_type = relation
        reverse = edge_index.flip(0)
        if src_type == dst_type:
            graph[relation].edge_index = torch.cat([edge_index, reverse], dim=1)
        else:
            graph[relation].edge_index = edge_index
            graph[(dst_type, rel, src_type)].edge_index = reverse
    return graph


def full_message_graph(data: HeteroData) -> HeteroData:
    """Build the message-passing graph of every edge, for final inference."""
    pairs = {r: undirected_pairs(data, r)[0] for r in canonical_relations(data)}
    return message_passing_graph(data, pairs)


def split_edges(data: HeteroData, valid_fraction: float, seed: int) -> LinkSplit:
    """Hold out ``valid_fraction`` of each relation's undirected pairs.

    The split depends only on ``seed`` and the graph, so every Ray worker
    and every restarted attempt computes the same one. A relation of fewer
    than two pairs keeps them all for training.

    Raises:
        ValueError: if the graph has no edges at all.
    """
    relations = canonical_relations(data)
    if not relations:
        raise ValueError(
            "the graph has no edge types: the HGNN needs co-interaction edges to "
            "train (check the graph stage's stats.json for dropped pairs)"
        )
    generator = torch.Generator().manual_seed(seed)
    train_pairs: dict[EdgeType, Tensor] = {}
    valid_pairs: dict[EdgeType, Tensor] = {}
    dropped: Counter = Counter()
    for relation in relations:
        pairs, relation_dropped = undirected_pairs(data, relation)
        dropped.update(relation_dropped)
        num_pairs = pairs.shape[1]
        num_valid = round(num_pairs * valid_fraction) if num_pairs >= 2 else 0
        order = torch.randperm(num_pairs, generator=generator)
        valid_pairs[relation] = pairs[:, order[:num_valid]]
        train_pairs[relation] = pairs[:, order[num_valid:]]
        logger.info(
            "relation %s: %d undirected pairs, %d train, %d valid, dropped %s",
            relation_name(relation),
            num_pairs,
            num_pairs - num_valid,
            num_valid,
            dict(relation_dropped),
        )
        if relation_dropped["reverse_only"]:
            logger.warning(
                "relation %s: %d pairs appear only in the reverse edge type and are "
                "left out; the graph must store both directions of every pair "
                "(rebuild it with gfm.graph)",
                relation_name(relation),
                relation_dropped["reverse_only"],
            )
        if num_pairs and num_valid == num_pairs:
            logger.warning(
                "relation %s: valid_fraction=%s holds out all %d pairs, so the "
                "relation has no training pairs and no message-passing edges; "
                "lower valid_fraction",
                relation_name(relation),
                valid_fraction,
                num_pairs,
            )
    if sum(p.shape[1] for p in train_pairs.values()) == 0:
        raise ValueError(
            "the graph has edge types but no edges left to train on after "
            f"dropping {dict(dropped)}"
        )
    return LinkSplit(
        relations=relations,
        train_pairs=train_pairs,
        valid_pairs=valid_pairs,
        message_graph=message_passing_graph(data, train_pairs),
        dropped=dict(dropped),
    )
