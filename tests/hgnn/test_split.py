"""Tests of the edge split into training and validation pairs."""

from __future__ import annotations

import logging

import pytest
import torch
from torch_geometric.data import HeteroData

from gfm.hgnn.split import canonical_relations, split_edges, undirected_pairs


def symmetric_graph() -> HeteroData:
    data = HeteroData()
    data["movie"].x = torch.randn(30, 4)
    data["tag"].x = torch.randn(10, 4)
    pairs = torch.tensor([[i, (i + j) % 30] for i in range(30) for j in (1, 2, 3)]).T
    data["movie", "co", "movie"].edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
    cross = torch.tensor([[i, i % 10] for i in range(30)]).T
    data["movie", "co", "tag"].edge_index = cross
    data["tag", "co", "movie"].edge_index = cross.flip(0)
    return data


def test_canonical_relations_one_per_type_pair():
    relations = canonical_relations(symmetric_graph())
    assert relations == [("movie", "co", "movie"), ("movie", "co", "tag")]


def test_missing_reverse_edge_type_raises():
    data = symmetric_graph()
    del data["tag", "co", "movie"]
    with pytest.raises(ValueError, match="no reverse"):
        canonical_relations(data)


def test_undirected_pairs_dedupe_and_count_self_loops():
    data = symmetric_graph()
    edge_index = data["movie", "co", "movie"].edge_index
    data["movie", "co", "movie"].edge_index = torch.cat(
        [edge_index, torch.tensor([[4, 5], [4, 5]])], dim=1
    )
    pairs, dropped = undirected_pairs(data, ("movie", "co", "movie"))
    assert pairs.shape[1] == 90
    assert bool((pairs[0] < pairs[1]).all())
    assert dropped["self_loop"] == 2


def test_split_holds_out_fraction_per_relation():
    split = split_edges(symmetric_graph(), valid_fraction=0.1, seed=0)
    counts = split.counts()
    assert counts["movie__co__movie"] == {"train": 81, "valid": 9}
    assert counts["movie__co__tag"] == {"train": 27, "valid": 3}


def test_validation_pairs_leave_message_graph_both_ways():
    split = split_edges(symmetric_graph(), valid_fraction=0.2, seed=1)
    graph = split.message_graph
    relation = ("movie", "co", "movie")
    edges = {tuple(e) for e in graph[relation].edge_index.T.tolist()}
    for u, v in split.valid_pairs[relation].T.tolist():
        assert (u, v) not in edges
        assert (v, u) not in edges
    cross = {tuple(e) for e in graph["tag", "co", "movie"].edge_index.T.tolist()}
    for movie, tag in split.valid_pairs[("movie", "co", "tag")].T.tolist():
        assert (tag, movie) not in cross
    assert (
        graph[relation].edge_index.shape[1] == 2 * split.train_pairs[relation].shape[1]
    )


def test_split_is_deterministic_per_seed():
    first = split_edges(symmetric_graph(), 0.1, seed=3)
    second = split_edges(symmetric_graph(), 0.1, seed=3)
    other = split_edges(symmetric_graph(), 0.1, seed=4)
    relation = ("movie", "co", "movie")
    assert torch.equal(first.valid_pairs[relation], second.valid_pairs[relation])
    assert not torch.equal(first.valid_pairs[relation], other.valid_pairs[relation])


def test_graph_without_edges_raises():
    data = HeteroData()
    data["movie"].x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="no edge types"):
        split_edges(data, 0.1, 0)


def test_reverse_only_pairs_are_counted():
    data = symmetric_graph()
    reverse = data["tag", "co", "movie"].edge_index
    # Tag 9 to movies 0 and 1 exist only in the reverse direction.
    extra = torch.tensor([[9, 9], [0, 1]])
    data["tag", "co", "movie"].edge_index = torch.cat([reverse, extra], dim=1)
    pairs, dropped = undirected_pairs(data, ("movie", "co", "tag"))
    assert pairs.shape[1] == 30
    assert dropped["reverse_only"] == 2
    assert split_edges(data, 0.1, seed=0).dropped["reverse_only"] == 2


def test_float_edge_index_raises():
    data = symmetric_graph()
    data["movie", "co", "movie"].edge_index = (
        data["movie", "co", "movie"].edge_index.float() + 0.5
    )
    with pytest.raises(ValueError, match="must be integers"):
        split_edges(data, 0.1, seed=0)


def test_whole_relation_held_out_warns(caplog):
    data = symmetric_graph()
    data["movie", "co", "tag"].edge_index = torch.tensor([[0, 1], [0, 1]])
    data["tag", "co", "movie"].edge_index = torch.tensor([[0, 1], [0, 1]])
    with caplog.at_level(logging.WARNING, logger="gfm.hgnn"):
        split = split_edges(data, valid_fraction=0.9, seed=0)
    assert split.counts()["movie__co__tag"] == {"train": 0, "valid": 2}
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "movie__co__tag: valid_fraction=0.9 holds out all 2" in m for m in messages
    )
