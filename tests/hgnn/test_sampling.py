"""Tests of the balanced per-epoch draw and the mini-batch loaders."""

from __future__ import annotations

import pytest
import torch

from gfm.hgnn.sampling import (
    build_neighbor_sampler,
    check_epoch_has_pairs,
    draw_epoch_edges,
    epoch_batches,
    isolate_nodes,
    relation_cap,
    relations_below_cap_floor,
)
from gfm.hgnn.split import split_edges

from .test_split import symmetric_graph

SMALL = ("a", "co", "b")
LARGE = ("a", "co", "a")


def pairs_of(sizes: dict) -> dict:
    return {
        r: torch.stack([torch.arange(n), torch.arange(n) + 1000])
        for r, n in sizes.items()
    }


def test_cap_is_smallest_relation_or_setting():
    sizes = {SMALL: 40, LARGE: 400}
    assert relation_cap(sizes, balanced=True, edges_per_relation=None) == 40
    assert relation_cap(sizes, balanced=True, edges_per_relation=25) == 25
    assert relation_cap(sizes, balanced=True, edges_per_relation=100) == 40
    assert relation_cap(sizes, balanced=False, edges_per_relation=25) is None


def test_cap_floor_ignores_tiny_relation():
    sizes = {SMALL: 1, LARGE: 400}
    # One batch of 64 per worker, 2 workers: the 1-pair relation cannot
    # lower the cap below 128.
    assert relation_cap(sizes, True, None, min_cap=128) == 128
    assert relation_cap(sizes, True, 100, min_cap=128) == 100
    assert relation_cap({SMALL: 200, LARGE: 400}, True, None, min_cap=128) == 200
    assert relations_below_cap_floor(sizes, True, None, 128) == {SMALL: 1}
    assert relations_below_cap_floor({SMALL: 200, LARGE: 400}, True, None, 128) == {}
    assert relations_below_cap_floor(sizes, False, None, 128) == {}


def test_tiny_relation_leaves_workers_pairs():
    train = pairs_of({SMALL: 1, LARGE: 400})
    shares = [
        draw_epoch_edges(
            train,
            epoch=0,
            seed=0,
            balanced=True,
            edges_per_relation=None,
            rank=rank,
            world_size=2,
            min_cap=128,
        )
        for rank in range(2)
    ]
    for share in shares:
        assert share.pairs[LARGE].shape[1] == 64
        assert share.pairs[SMALL].shape[1] == 0
    assert shares[0].dropped_for_shards == {SMALL: 1, LARGE: 0}
    assert shares[0].dropped_by_cap == {SMALL: 0, LARGE: 272}


def test_epoch_without_pairs_raises():
    sizes = {SMALL: 1, LARGE: 1}
    assert (
        check_epoch_has_pairs(
            sizes,
            balanced=True,
            edges_per_relation=None,
            batch_size=8,
            world_size=1,
        )
        == 2
    )
    with pytest.raises(ValueError, match="each of the 2 workers no training pairs"):
        check_epoch_has_pairs(
            sizes, balanced=True, edges_per_relation=None, batch_size=8, world_size=2
        )
    with pytest.raises(ValueError, match="capped at 1 per relation"):
        check_epoch_has_pairs(
            {SMALL: 40, LARGE: 400},
            balanced=True,
            edges_per_relation=1,
            batch_size=8,
            world_size=2,
        )


def test_balanced_draw_caps_every_relation():
    draw = draw_epoch_edges(
        pairs_of({SMALL: 40, LARGE: 400}),
        epoch=0,
        seed=0,
        balanced=True,
        edges_per_relation=None,
    )
    assert draw.pairs[SMALL].shape[1] == 40
    assert draw.pairs[LARGE].shape[1] == 40
    assert draw.dropped_by_cap == {SMALL: 0, LARGE: 360}


def test_unbalanced_draw_keeps_every_edge():
    draw = draw_epoch_edges(
        pairs_of({SMALL: 40, LARGE: 400}),
        epoch=0,
        seed=0,
        balanced=False,
        edges_per_relation=10,
    )
    assert draw.pairs[LARGE].shape[1] == 400
    assert draw.dropped_by_cap[LARGE] == 0


def test_draw_is_redrawn_every_epoch():
    train = pairs_of({SMALL: 40, LARGE: 400})
    first = draw_epoch_edges(
        train, epoch=0, seed=0, balanced=True, edges_per_relation=None
    )
    again = draw_epoch_edges(
        train, epoch=0, seed=0, balanced=True, edges_per_relation=None
    )
    second = draw_epoch_edges(
        train, epoch=1, seed=0, balanced=True, edges_per_relation=None
    )
    assert torch.equal(first.pairs[LARGE], again.pairs[LARGE])
    assert set(first.pairs[LARGE][0].tolist()) != set(second.pairs[LARGE][0].tolist())


def test_worker_shares_are_disjoint_and_equal():
    train = pairs_of({SMALL: 41, LARGE: 400})
    shares = [
        draw_epoch_edges(
            train,
            epoch=2,
            seed=0,
            balanced=True,
            edges_per_relation=None,
            rank=r,
            world_size=2,
        )
        for r in range(2)
    ]
    for relation in (SMALL, LARGE):
        first = set(shares[0].pairs[relation][0].tolist())
        second = set(shares[1].pairs[relation][0].tolist())
        assert len(first) == len(second) == 20
        assert not first & second
    assert shares[0].dropped_for_shards == {SMALL: 1, LARGE: 1}


def test_epoch_batches_cover_the_draw_with_negatives():
    split = split_edges(symmetric_graph(), 0.1, seed=0)
    sampler = build_neighbor_sampler(split.message_graph, [3, 2])
    draw = draw_epoch_edges(
        split.train_pairs, epoch=0, seed=0, balanced=True, edges_per_relation=None
    )
    batches = list(
        epoch_batches(
            split.message_graph,
            sampler,
            draw,
            batch_size=8,
            num_neighbors=[3, 2],
            num_negatives=2,
            epoch=0,
            seed=0,
        )
    )
    relations = [relation for relation, _ in batches]
    assert relations.count(("movie", "co", "movie")) == 4
    assert relations.count(("movie", "co", "tag")) == 4
    seen = 0
    for relation, batch in batches:
        src_type, _, dst_type = relation
        size = batch[src_type].src_index.numel()
        seen += size
        assert batch[dst_type].dst_pos_index.shape == (size,)
        assert batch[dst_type].dst_neg_index.shape == (size, 2)
        assert int(batch[dst_type].dst_neg_index.max()) < batch[dst_type].num_nodes
    assert seen == draw.num_pairs


def _in_neighbours(batch, edge_type, local_dst: int) -> set[int]:
    # Global ids of the sampled in-neighbours of one batch node.
    src_type = edge_type[0]
    edge_index = batch[edge_type].edge_index
    sources = edge_index[0, edge_index[1] == local_dst]
    return set(batch[src_type].n_id[sources].tolist())


def test_neighbours_redrawn_within_fanout():
    split = split_edges(symmetric_graph(), 0.1, seed=0)
    graph = split.message_graph
    fanouts = [3, 2]
    sampler = build_neighbor_sampler(graph, fanouts)
    draw = draw_epoch_edges(
        split.train_pairs, epoch=0, seed=0, balanced=True, edges_per_relation=None
    )
    torch.manual_seed(0)
    iterations = [
        list(
            epoch_batches(
                graph,
                sampler,
                draw,
                batch_size=8,
                num_neighbors=fanouts,
                num_negatives=1,
                epoch=0,
                seed=0,
            )
        )
        for _ in range(2)
    ]

    relation = ("movie", "co", "movie")
    sampled = []
    for batches in iterations:
        edges = set()
        for batch_relation, batch in batches:
            if batch_relation != relation:
                continue
            for local in batch["movie"].src_index.tolist():
                movie = int(batch["movie"].n_id[local])
                edges |= {(n, movie) for n in _in_neighbours(batch, relation, local)}
        sampled.append(edges)
    # Every movie has 4 to 6 movie neighbours, so a fan-out of 3 leaves some out.
    assert sampled[0]
    assert sampled[0] != sampled[1]

    seeds_at_fanout = 0
    for batches in iterations:
        for batch_relation, batch in batches:
            src_type, _, dst_type = batch_relation
            seeds = {src_type: set(), dst_type: set()}
            seeds[src_type] |= set(batch[src_type].src_index.tolist())
            seeds[dst_type] |= set(batch[dst_type].dst_pos_index.tolist())
            seeds[dst_type] |= set(batch[dst_type].dst_neg_index.view(-1).tolist())
            for edge_type in batch.edge_types:
                node_type = edge_type[2]
                in_degree = torch.bincount(
                    batch[edge_type].edge_index[1],
                    minlength=batch[node_type].num_nodes,
                )
                # Seeds are sampled with the first fan-out, the nodes they
                # reach with the second, and the last hop's nodes not at all.
                for local, degree in enumerate(in_degree.tolist()):
                    if local in seeds.get(node_type, set()):
                        assert degree <= fanouts[0], (edge_type, local)
                        seeds_at_fanout += degree == fanouts[0]
                    else:
                        assert degree <= fanouts[1], (edge_type, local)
    assert seeds_at_fanout > 0


def test_isolate_nodes_drops_edges_into_picked_nodes():
    batch = symmetric_graph()
    torch.manual_seed(3)
    remaining = isolate_nodes(batch, 0.5)
    torch.manual_seed(3)
    picked = {t: torch.rand(batch[t].num_nodes) < 0.5 for t in ("movie", "tag")}

    for relation, edge_index in batch.edge_index_dict.items():
        expected = edge_index[:, ~picked[relation[2]][edge_index[1]]]
        assert torch.equal(remaining[relation], expected)
        assert 0 < remaining[relation].shape[1] < edge_index.shape[1]


def test_isolate_nodes_fraction_zero_keeps_every_edge():
    batch = symmetric_graph()
    remaining = isolate_nodes(batch, 0.0)
    for relation, edge_index in batch.edge_index_dict.items():
        assert torch.equal(remaining[relation], edge_index)
