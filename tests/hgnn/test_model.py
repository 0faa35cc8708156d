"""Tests of HeteroGraphSAGE."""

from __future__ import annotations

import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn.dense.linear import Linear

import gfm.hgnn.inference
from gfm.hgnn.inference import embed_graph, layer_fanouts, subsample_in_edges
from gfm.hgnn.model import HeteroGraphSAGE, upgrade_state_dict
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


def randomize(model: HeteroGraphSAGE) -> HeteroGraphSAGE:
    # Fresh Linear biases are small; trained ones are not.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model.eval()


def with_edgeless_artists(data: HeteroData, count: int = 5) -> HeteroData:
    # Artists 40.. get features but no edges.
    extra = torch.randn(count, 6, generator=torch.Generator().manual_seed(2))
    data["artist"].x = torch.cat([data["artist"].x, extra])
    return data


def test_relation_convs_have_no_bias():
    model = make_model(make_graph())
    for layer in model.convs:
        for conv in layer.convs.values():
            assert conv.lin_l.bias is None
    for roots in model.roots:
        for root in roots.values():
            assert root.bias is not None


def test_edgeless_items_ignore_edge_types():
    data = with_edgeless_artists(make_graph())
    model = randomize(make_model(data))
    bare = data.clone()
    for edge_type in list(bare.edge_types):
        del bare[edge_type]
    partial = data.clone()
    del partial["artist", "co", "tag"]
    del partial["tag", "co", "artist"]

    full_out = embed_graph(model, data, fanouts=[-1, -1])["artist"][40:]
    bare_out = embed_graph(model, bare, fanouts=[-1, -1])["artist"][40:]
    partial_out = embed_graph(model, partial, fanouts=[-1, -1])["artist"][40:]
    assert torch.allclose(full_out, bare_out, atol=1e-6)
    assert torch.allclose(full_out, partial_out, atol=1e-6)
    forward_out = model(data.x_dict, data.edge_index_dict)["artist"][40:]
    forward_bare = model(bare.x_dict, {})["artist"][40:]
    assert torch.allclose(forward_out, full_out, atol=1e-5)
    assert torch.allclose(forward_bare, full_out, atol=1e-5)


def test_upgrade_keeps_old_outputs():
    data = make_graph()
    old = make_model(data)
    # Earlier versions had a bias in every relation's SAGEConv.
    for layer in old.convs:
        for conv in layer.convs.values():
            weight = conv.lin_l.weight
            conv.lin_l = Linear(weight.shape[1], weight.shape[0], bias=True)
    old = randomize(old)
    weights = old.state_dict()
    assert any(k.endswith("lin_l.bias") for k in weights)

    new = make_model(data).eval()
    upgraded = upgrade_state_dict(weights)
    new.load_state_dict(upgraded)
    assert not any(k.endswith("lin_l.bias") for k in upgraded)
    expected = old(data.x_dict, data.edge_index_dict)
    actual = new(data.x_dict, data.edge_index_dict)
    for node_type, value in expected.items():
        assert torch.allclose(actual[node_type], value, atol=1e-5), node_type
    assert upgrade_state_dict(new.state_dict()).keys() == new.state_dict().keys()


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
