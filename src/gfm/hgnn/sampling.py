"""Per-epoch edge draws and mini-batch loaders for link prediction.

Each epoch, :func:`draw_epoch_edges` applies the balanced multi-link
sampler of 2T-HGNN (arXiv 2403.05185). It caps every relation's training
pairs at the same count and redraws them every epoch, so a dense relation
cannot drown out a sparse one. The count is the smallest relation's size,
but at least one batch per worker (``batch_size * world_size``), and
lowered to ``edges_per_relation`` when that is smaller. The floor keeps a
relation of a handful of pairs from shrinking every epoch to a handful of
steps. Each Ray worker then takes its own disjoint share of the draw.
:func:`epoch_batches` turns a worker's share into ``LinkNeighborLoader``
mini-batches with fixed-size uniform neighbour sampling, a fresh sample at
every iteration, and random negative items per positive pair.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.loader import LinkNeighborLoader
from torch_geometric.sampler import NegativeSampling, NeighborSampler
from torch_geometric.typing import EdgeType

logger = logging.getLogger(__name__)


@dataclass
class EpochDraw:
    """One worker's training pairs for one epoch.

    Args:
        pairs: ``[2, n]`` pairs per relation for this worker.
        drawn: pairs drawn per relation across all workers.
        dropped_by_cap: pairs per relation left out by the balancing cap.
        dropped_for_shards: pairs per relation left out so that every worker
            gets the same count (fewer than ``world_size`` per relation).
    """

    pairs: dict[EdgeType, Tensor]
    drawn: dict[EdgeType, int]
    dropped_by_cap: dict[EdgeType, int]
    dropped_for_shards: dict[EdgeType, int]

    @property
    def num_pairs(self) -> int:
        """Pairs of this worker, over all relations."""
        return sum(int(p.shape[1]) for p in self.pairs.values())

    def num_batches(self, batch_size: int) -> int:
        """Return the number of mini-batches of ``batch_size`` pairs in this share."""
        return sum(-(-int(p.shape[1]) // batch_size) for p in self.pairs.values())


def min_relation_cap(batch_size: int, world_size: int) -> int:
    """Return the floor of the balancing cap: one full batch per worker."""
    return batch_size * world_size


def relation_cap(
    sizes: dict[EdgeType, int],
    balanced: bool,
    edges_per_relation: int | None,
    min_cap: int = 1,
) -> int | None:
    """Return the per-relation pair cap of an epoch, or ``None`` for no cap.

    Balanced: the smallest non-empty relation's size, raised to ``min_cap``
    when smaller, then lowered to ``edges_per_relation`` when that is set
    and smaller. A relation below ``min_cap`` therefore does not set the
    cap of the others, and trains on all of its pairs. Not balanced: no cap.
    """
    if not balanced:
        return None
    non_empty = [n for n in sizes.values() if n > 0]
    if not non_empty:
        return 0
    cap = max(min(non_empty), min_cap)
    if edges_per_relation is not None:
        cap = min(cap, edges_per_relation)
    return cap


def relations_below_cap_floor(
    sizes: dict[EdgeType, int],
    balanced: bool,
    edges_per_relation: int | None,
    min_cap: int,
) -> dict[EdgeType, int]:
    """Return the relations that the floor ``min_cap`` kept from setting the cap.

    Returns:
        Each non-empty relation smaller than the raised cap, with its size,
        when ``min_cap`` raised the cap; otherwise an empty dict.
    """
    cap = relation_cap(sizes, balanced, edges_per_relation, min_cap)
    if cap is None or cap <= relation_cap(sizes, balanced, edges_per_relation):
        return {}
    return {r: n for r, n in sorted(sizes.items()) if 0 < n < cap}


def pairs_per_worker(
    sizes: dict[EdgeType, int], cap: int | None, world_size: int
) -> int:
    """Return the training pairs each worker gets per epoch under ``cap``.

    Each relation is rounded down to a multiple of ``world_size``, as
    :func:`draw_epoch_edges` shards it.
    """
    total = 0
    for size in sizes.values():
        keep = size if cap is None else min(size, cap)
        total += keep // world_size
    return total


def check_epoch_has_pairs(
    sizes: dict[EdgeType, int],
    *,
    balanced: bool,
    edges_per_relation: int | None,
    batch_size: int,
    world_size: int,
) -> int:
    """Return the training pairs per worker and epoch, and raise if there are none.

    Every epoch draws from the same relation sizes, so when the first epoch
    gives a worker no pair, no epoch takes an optimizer step.

    Raises:
        ValueError: naming the relation sizes, the cap and the settings that
            give each worker at least one pair.
    """
    cap = relation_cap(
        sizes, balanced, edges_per_relation, min_relation_cap(batch_size, world_size)
    )
    per_worker = pairs_per_worker(sizes, cap, world_size)
    if per_worker == 0:
        named = {"__".join(r): n for r, n in sorted(sizes.items())}
        raise ValueError(
            f"an epoch would give each of the {world_size} workers no training "
            f"pairs, so no optimizer step would run: training pairs per relation "
            f"{named}, capped at {cap} per relation (edges_per_relation="
            f"{edges_per_relation}). Each relation is rounded down to a multiple of "
            "num_workers; lower num_workers, raise edges_per_relation, or add edges "
            "to the graph"
        )
    return per_worker


def draw_epoch_edges(
    train_pairs: dict[EdgeType, Tensor],
    *,
    epoch: int,
    seed: int,
    balanced: bool,
    edges_per_relation: int | None,
    rank: int = 0,
    world_size: int = 1,
    min_cap: int = 1,
) -> EpochDraw:
    """Draw this epoch's training pairs and return worker ``rank``'s share.

    The draw depends only on ``seed`` and ``epoch``, so all workers agree on
    it and a restarted attempt redraws the same pairs. Every worker gets the
    same number of pairs per relation, so DDP workers take the same number of
    optimizer steps. ``min_cap`` is the floor of the balancing cap (see
    :func:`relation_cap`).
    """
    relations = sorted(train_pairs)
    sizes = {r: int(train_pairs[r].shape[1]) for r in relations}
    cap = relation_cap(sizes, balanced, edges_per_relation, min_cap)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)

    pairs: dict[EdgeType, Tensor] = {}
    drawn: dict[EdgeType, int] = {}
    dropped_by_cap: dict[EdgeType, int] = {}
    dropped_for_shards: dict[EdgeType, int] = {}
    for relation in relations:
        size = sizes[relation]
        order = torch.randperm(size, generator=generator)
        keep = size if cap is None else min(size, cap)
        even = (keep // world_size) * world_size
        chosen = order[:even]
        pairs[relation] = train_pairs[relation][:, chosen[rank::world_size]]
        drawn[relation] = keep
        dropped_by_cap[relation] = size - keep
        dropped_for_shards[relation] = keep - even
    return EpochDraw(pairs, drawn, dropped_by_cap, dropped_for_shards)


def build_neighbor_sampler(
    graph: HeteroData, num_neighbors: list[int]
) -> NeighborSampler:
    """Build the uniform neighbour sampler of the message-passing graph once.

    Building it converts every edge type to CSC, so the loaders of all epochs
    share one instance.
    """
    with warnings.catch_warnings():
        # Without pyg-lib, PyG samples through torch-sparse and warns that
        # this path is deprecated; the samples are the same.
        warnings.filterwarnings("ignore", message=".*pyg-lib.*")
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        return NeighborSampler(graph, num_neighbors=num_neighbors, replace=False)


def epoch_batches(
    graph: HeteroData,
    sampler: NeighborSampler,
    draw: EpochDraw,
    *,
    batch_size: int,
    num_neighbors: list[int],
    num_negatives: int,
    epoch: int,
    seed: int,
) -> Iterator[tuple[EdgeType, HeteroData]]:
    """Yield ``(relation, batch)`` mini-batches of one epoch, relations mixed.

    Each batch is a sampled subgraph around ``batch_size`` positive pairs of
    one relation and ``num_negatives`` random destination nodes per pair. In
    the batch, ``batch[src_type].src_index``, ``batch[dst_type].dst_pos_index``
    and ``batch[dst_type].dst_neg_index`` (``[B]``, or ``[B, num_negatives]``)
    index the batch's nodes. The order of relations across steps is a seeded
    shuffle, so an epoch interleaves them.
    """
    loaders = {}
    steps: list[EdgeType] = []
    for relation, pairs in draw.pairs.items():
        if pairs.shape[1] == 0:
            continue
        # NOTE: a batch's positive pairs stay in the message-passing graph,
        # so the network can read the edge it scores. Held-out validation
        # pairs are not in the graph.
        loaders[relation] = iter(
            LinkNeighborLoader(
                graph,
                num_neighbors=num_neighbors,
                edge_label_index=(relation, pairs),
                neg_sampling=NegativeSampling("triplet", amount=num_negatives),
                batch_size=batch_size,
                shuffle=False,
                neighbor_sampler=sampler,
            )
        )
        steps += [relation] * -(-int(pairs.shape[1]) // batch_size)

    generator = torch.Generator().manual_seed(seed * 7_919 + epoch)
    order = torch.randperm(len(steps), generator=generator).tolist()
    for index in order:
        relation = steps[index]
        yield relation, next(loaders[relation])


def isolate_nodes(batch: HeteroData, fraction: float) -> dict[EdgeType, Tensor]:
    """Return the batch's edges without those into a random share of its nodes.

    Each node of the batch is picked with probability ``fraction`` (from
    torch's global generator), and every edge whose destination is a picked
    node is left out, in every relation and so at every layer. A picked node
    is then embedded as an item without edges is at inference.
    """
    picked = {
        node_type: torch.rand(batch[node_type].num_nodes,
                              device=batch[node_type].x.device) < fraction
        for node_type in batch.node_types
    }
    return {
        relation: edge_index[:, ~picked[relation[2]][edge_index[1]]]
        for relation, edge_index in batch.edge_index_dict.items()
    }
