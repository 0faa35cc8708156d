"""Tests of HeteroGraphSAGE."""

from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

import gfm.hgnn.inference
from gfm.hgnn.inference import embed_graph, layer_fanouts, subsample_in_edges
from gfm.hgnn.model import HeteroGraphSAGE
from gfm.hgnn.sampling import build_neighbor_sampler, draw_epoch_edges, epoch_batches
from gfm.hgnn.split import split_edges


def make_graph(seed: int = 0) -> HeteroData:
    generator = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data["artist"].x = torch.randn(40, 6, generator=generator)
    data["tag"].x = torch.randn(15, 4, generator=generator)
    data["album"].x = torch.randn(5, 3, generator=generator)  # no relation at all
    data["artist", "co", "artist"].edge_index = torch.randint(
        0, 40, (2, 120), generator=generator
    )
    cross = torch.stack(
        [
            torch.randint(0, 40, (60,), generator=generator),
            torch.randint(0, 15, (60,), generator=generator),
        ]
    )
    data["artist", "co", "tag"].edge_index = cross
    data["tag", "co", "artist"].edge_index = cross.flip(0)
    return data


def make_model(data: HeteroData, **kwargs) -> HeteroGraphSAGE:
    torch.manual_seed(0)
    in_dims = {t: data[t].x.shape[1] for t in data.node_types}
    return HeteroGraphSAGE(
        data.node_types, data.edge_types, in_dims, hidden_dim=16, out_dim=8, **kwargs
    )


def test_forward_shapes_and_unit_norm():
    data = make_graph()
    out = make_model(data)(data.x_dict, data.edge_index_dict)
    assert set(out) == {"artist", "tag", "album"}
    assert out["artist"].shape == (40, 8)
    assert out["tag"].shape == (15, 8)
    assert out["album"].shape == (5, 8)
    for value in out.values():
        assert torch.allclose(value.norm(dim=1), torch.ones(value.shape[0]), atol=1e-5)


def test_node_without_edges_depends_only_on_features():
    data = make_graph()
    model = make_model(data).eval()
    before = model(data.x_dict, data.edge_index_dict)["album"]
    data["artist"].x = data["artist"].x + 1.0
    after = model(data.x_dict, data.edge_index_dict)["album"]
    assert torch.allclose(before, after)
    assert torch.isfinite(after).all()


def test_separate_weights_per_relation():
    data = make_graph()
    # One layer, so a relation's weights reach only its destination type.
    model = make_model(data, num_layers=1).eval()
    convs = model.convs[0].convs
    cross = convs[("artist", "co", "tag")]
    assert cross.aggr == "max"
    cross_parameters = {id(p) for p in cross.parameters()}
    for edge_type in [("artist", "co", "artist"), ("tag", "co", "artist")]:
        other_parameters = {id(p) for p in convs[edge_type].parameters()}
        assert not cross_parameters & other_parameters, edge_type

    before = model(data.x_dict, data.edge_index_dict)
    with torch.no_grad():
        cross.lin_l.weight.add_(1.0)
    after = model(data.x_dict, data.edge_index_dict)
    assert not torch.allclose(before["tag"], after["tag"])
    assert torch.allclose(before["artist"], after["artist"])
    assert torch.allclose(before["album"], after["album"])


def test_full_fanout_inference_matches_forward():
    data = make_graph()
    model = make_model(data).eval()
    expected = model(data.x_dict, data.edge_index_dict)
    chunked = embed_graph(model, data, fanouts=[-1, -1], batch_size=7)
    for node_type, value in expected.items():
        assert torch.allclose(chunked[node_type], value, atol=1e-5), node_type


def test_inference_ignores_unknown_edge_types():
    data = make_graph()
    model = make_model(data).eval()
    data["album", "co", "album"].edge_index = torch.tensor([[0, 1], [1, 0]])
    out = embed_graph(model, data, fanouts=[3, 3])
    assert out["album"].shape == (5, 8)
    assert torch.isfinite(out["album"]).all()


def test_hparams_round_trip():
    data = make_graph()
    model = make_model(data, num_layers=3, project=False, dropout=0.1)
    again = HeteroGraphSAGE.from_hparams(model.hparams())
    again.load_state_dict(model.state_dict())
    assert again.num_layers == 3
    assert again.project is False
    assert again.edge_types == model.edge_types


def test_subsample_caps_in_degree():
    edge_index = torch.stack([torch.arange(30), torch.tensor([0] * 20 + [1] * 10)])
    generator = torch.Generator().manual_seed(0)
    kept = subsample_in_edges(edge_index, num_dst=3, fanout=4, generator=generator)
    degree = torch.bincount(kept[1], minlength=3)
    assert degree.tolist() == [4, 4, 0]
    assert set(kept[0, kept[1] == 0].tolist()) <= set(range(20))
    everything = subsample_in_edges(
        edge_index, num_dst=3, fanout=-1, generator=generator
    )
    assert everything.shape[1] == 30


def test_layer_fanouts_reverse_pyg_order():
    assert layer_fanouts([10, 5]) == [5, 10]
    assert layer_fanouts([7]) == [7]


def test_fanout_order_matches_training(monkeypatch):
    # PyG's NeighborLoader gives the seed nodes num_neighbors[0] neighbours,
    # and the seeds are what the last layer computes. embed_graph must give
    # the last layer the same fan-out.
    data = make_graph()
    del data["album"]
    fanouts = [3, 1]
    split = split_edges(data, 0.1, seed=0)
    graph = split.message_graph
    draw = draw_epoch_edges(
        split.train_pairs, epoch=0, seed=0, balanced=False, edges_per_relation=None
    )
    relation = ("artist", "co", "artist")
    batches = epoch_batches(
        graph,
        build_neighbor_sampler(graph, fanouts),
        draw,
        batch_size=64,
        num_neighbors=fanouts,
        num_negatives=1,
        epoch=0,
        seed=0,
    )
    batch = next(b for r, b in batches if r == relation)
    seeds = batch["artist"].src_index
    in_degree = torch.bincount(
        batch[relation].edge_index[1], minlength=batch["artist"].num_nodes
    )
    assert int(in_degree[seeds].max()) == fanouts[0]

    kept_in_degree: list[int] = []

    def spy(edge_index, num_dst, fanout, generator):
        kept = subsample_in_edges(edge_index, num_dst, fanout, generator)
        kept_in_degree.append(int(torch.bincount(kept[1]).max()))
        return kept

    monkeypatch.setattr(gfm.hgnn.inference, "subsample_in_edges", spy)
    embed_graph(make_model(data).eval(), graph, fanouts=fanouts)
    per_layer = len(graph.edge_types)
    assert max(kept_in_degree[:per_layer]) == fanouts[1]
    assert max(kept_in_degree[per_layer:]) == fanouts[0]
