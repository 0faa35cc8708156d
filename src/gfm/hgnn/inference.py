"""Layer-wise inference of node embeddings over a whole graph.

Inference computes one layer for every node before the next layer, in
chunks of destination nodes, so memory grows with the chunk's edges and not
with a multi-hop neighbourhood. Before each layer, every node keeps at most
``fanout`` incoming edges per relation, drawn uniformly with a fixed seed.
A fan-out of ``-1`` keeps every edge.

Fan-out lists follow PyG's ``NeighborLoader`` order, as training does:
``fanouts[0]`` is the fan-out of the seed nodes, which the last (output)
layer aggregates. Layer-wise inference runs from the first layer to the
last, so it reads the list from the end (:func:`layer_fanouts`).
"""

from __future__ import annotations

import logging
import time

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType, NodeType

from gfm.hgnn.model import HeteroGraphSAGE, normalize

logger = logging.getLogger(__name__)


def subsample_in_edges(
    edge_index: Tensor, num_dst: int, fanout: int, generator: torch.Generator
) -> Tensor:
    """Keep at most ``fanout`` uniformly drawn incoming edges per destination.

    Args:
        edge_index: ``[2, E]`` edges, row 1 indexing destinations.
        num_dst: number of destination nodes.
        fanout: edges kept per destination; ``-1`` keeps all.
        generator: source of the draw.

    Returns:
        ``[2, E']`` edges sorted by destination.
    """
    if edge_index.shape[1] == 0:
        return edge_index
    shuffle = torch.randperm(edge_index.shape[1], generator=generator)
    edge_index = edge_index[:, shuffle]
    dst = edge_index[1]
    dst, order = torch.sort(dst, stable=True)
    edge_index = edge_index[:, order]
    if fanout < 0:
        return edge_index
    counts = torch.bincount(dst, minlength=num_dst)
    starts = torch.cumsum(counts, 0) - counts
    rank_in_group = torch.arange(dst.numel()) - starts[dst]
    return edge_index[:, rank_in_group < fanout]


def layer_fanouts(fanouts: list[int]) -> list[int]:
    """Return the fan-out of each layer, first (input) layer first.

    ``fanouts`` is in PyG's ``NeighborLoader`` order, seed nodes first, and
    the seed nodes are what the last layer computes.
    """
    return list(reversed(fanouts))


def _chunk_edges(edge_index: Tensor, start: int, stop: int) -> Tensor:
    # edge_index is sorted by destination, so a chunk's edges are one slice.
    dst = edge_index[1]
    low = int(torch.searchsorted(dst, start))
    high = int(torch.searchsorted(dst, stop))
    return edge_index[:, low:high]


@torch.no_grad()
def embed_graph(
    network: HeteroGraphSAGE,
    graph: HeteroData,
    *,
    fanouts: list[int],
    batch_size: int = 4096,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[NodeType, Tensor]:
    """Embed every node of ``graph`` with the network, layer by layer.

    Args:
        network: a trained (or any) :class:`HeteroGraphSAGE`.
        graph: node features ``x`` per node type and ``edge_index`` per edge
            type. Edge types the network has no weights for are ignored
            (logged once per call).
        fanouts: incoming edges kept per node and relation, one per layer in
            PyG's ``NeighborLoader`` order: ``fanouts[0]`` for the last
            (output) layer, ``fanouts[-1]`` for the first. ``-1`` keeps all.
        batch_size: destination nodes per chunk.
        seed: seed of the neighbour draw.
        device: device of the network; the neighbour draw stays on the CPU.

    Returns:
        ``[num_nodes_t, out_dim]`` unit-norm embeddings per node type.

    Raises:
        ValueError: if a node type is unknown to the network, its feature
            dimension differs from training, or ``fanouts`` does not have one
            entry per layer.
    """
    started = time.perf_counter()
    _check_graph(network, graph)
    if len(fanouts) != network.num_layers:
        raise ValueError(
            f"fanouts={fanouts} needs one fan-out per layer of the network "
            f"(num_layers={network.num_layers})"
        )
    was_training = network.training
    network.eval()

    known = set(network.edge_types)
    edge_types = [e for e in graph.edge_types if tuple(e) in known]
    ignored = [e for e in graph.edge_types if tuple(e) not in known]
    if ignored:
        logger.warning(
            "ignoring %d edge types the model has no weights for: %s",
            len(ignored),
            ignored,
        )

    h = {
        t: _chunked(network.input[t], graph[t].x.float(), batch_size, device)
        for t in graph.node_types
    }
    generator = torch.Generator().manual_seed(seed)
    for layer, fanout in enumerate(layer_fanouts(fanouts)):
        sampled = {
            e: subsample_in_edges(
                graph[e].edge_index.long().cpu(),
                int(graph[e[2]].num_nodes),
                fanout,
                generator,
            ).to(device)
            for e in edge_types
        }
        h = _layer_in_chunks(network, layer, h, sampled, batch_size)

    network.train(was_training)
    out = normalize(h)
    logger.info(
        "embedded %d nodes of %d types in %.2f s",
        sum(v.shape[0] for v in out.values()),
        len(out),
        time.perf_counter() - started,
    )
    return out


def _chunked(function, x: Tensor, batch_size: int, device) -> Tensor:
    parts = [
        function(x[i : i + batch_size].to(device))
        for i in range(0, x.shape[0], batch_size)
    ]
    if not parts:
        return function(x.to(device))
    return torch.cat(parts)


def _layer_in_chunks(
    network: HeteroGraphSAGE,
    layer: int,
    h: dict[NodeType, Tensor],
    sampled: dict[EdgeType, Tensor],
    batch_size: int,
) -> dict[NodeType, Tensor]:
    convs = network.convs[layer].convs
    outputs: dict[NodeType, Tensor] = {}
    for node_type, states in h.items():
        parts = []
        for start in range(0, states.shape[0], batch_size):
            stop = min(start + batch_size, states.shape[0])
            chunk = states[start:stop]
            out = network.roots[layer][node_type](chunk)
            for edge_type, edge_index in sampled.items():
                if edge_type[2] != node_type:
                    continue
                edges = _chunk_edges(edge_index, start, stop)
                # Only the sources this chunk reads go through the layer, so
                # the pooling projection runs on them and not on every node.
                used, local_src = torch.unique(edges[0], return_inverse=True)
                local_edges = torch.stack([local_src.view(-1), edges[1] - start])
                message = convs[edge_type]((h[edge_type[0]][used], chunk), local_edges)
                out = out + message
            parts.append(network.activate(layer, {node_type: out})[node_type])
        outputs[node_type] = (
            torch.cat(parts)
            if parts
            else network.activate(
                layer, {node_type: network.roots[layer][node_type](states)}
            )[node_type]
        )
    return outputs


def _check_graph(network: HeteroGraphSAGE, graph: HeteroData) -> None:
    for node_type in graph.node_types:
        if node_type not in network.in_dims:
            raise ValueError(
                f"node type {node_type!r} is unknown to the model (trained on "
                f"{network.node_types}); retrain with this item type in the graph"
            )
        x = graph[node_type].get("x")
        if x is None:
            raise ValueError(f"node type {node_type!r} has no features x")
        if x.shape[1] != network.in_dims[node_type]:
            raise ValueError(
                f"node type {node_type!r} has {x.shape[1]}-dimensional features, "
                f"the model expects {network.in_dims[node_type]}; featurize with the "
                "same embedding model as the training graph"
            )
