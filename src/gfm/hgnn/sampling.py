"""Per-epoch edge draws and mini-batch loaders for link prediction.

Each epoch, :func:`draw_epoch_edges` applies the balanced multi-link
sampler of 2T-HGNN (arXiv 2403.05185). It caps every relation's training
pairs at the same count and redraws them every epoch, so a dense relation
cannot drown out a sparse one. The count is the smallest relation's size,
or ``edges_per_relation`` when that is smaller. Each Ray worker then takes
its own disjoint share of the draw.
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


def relation_cap(
    sizes: dict[EdgeType, int], balanced: bool, edges_per_relation: int | None
) -> int | None:
    """Return the per-relation pair cap of an epoch, or ``None`` for no cap.

    Balanced: the smallest non-empty relation's size, lowered to
    ``edges_per_relation`` when that is set and smaller. Not balanced: no cap.
    """
    if not balanced:
        return None
    non_empty = [n for n in sizes.values() if n > 0]
    if not non_empty:
        return 0
    cap = min(non_empty)
    if edges_per_relation is not None:
        cap = min(cap, edges_per_relation)
    return cap


def draw_epoch_edges(
    train_pairs: dict[EdgeType, Tensor],
    *,
    epoch: int,
    seed: int,
    balanced: bool,
    edges_per_relation: int | None,
    rank: int = 0,
    world_size: int = 1,
) -> EpochDraw:
    """Draw this epoch's training pairs and return worker ``rank``'s share.

    The draw depends only on ``seed`` and ``epoch``, so all workers agree on
    it and a restarted attempt redraws the same pairs. Every worker gets the
    same number of pairs per relation, so DDP workers take the same number of
    optimizer steps.
    """
    relations = sorted(train_pairs)
    sizes = {r: int(train_pairs[r].shape[1]) for r in relations}
    cap = relation_cap(sizes, balanced, edges_per_relation)
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
