"""build_graph: nodes, features, symmetric relations and input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from gfm.embeddings import ItemEmbeddings
from gfm.graph import EmptyGraphError, GraphConfig, GraphInputError, build_graph
from gfm.graph.cooccurrence import ItemPairs
from gfm.graph.hetero import Catalog, assemble_hetero_data

from .conftest import make_features, make_interactions, make_items

OPEN = GraphConfig(window_days=None, min_count=1, top_k=None)


def test_every_catalog_item_is_a_node(random_tables):
    interactions, items = random_tables
    features = make_features(items)
    result = build_graph(interactions, items, features, OPEN)

    data = result.data
    assert sorted(data.node_types) == ["album", "show", "tag"]
    for node_type in data.node_types:
        expected_ids = items.loc[items["item_type"] == node_type, "item_id"].tolist()
        assert data[node_type].item_ids == expected_ids
        assert data[node_type].num_nodes == len(expected_ids)
        assert data[node_type].x.dtype == torch.float32
        np.testing.assert_array_equal(
            data[node_type].x.numpy(), features.select(expected_ids)
        )
    assert result.stats["nodes"] == {"album": 10, "show": 8, "tag": 6}
    assert result.stats["features"] == {"dim": 4, "not_in_catalog": 0}


def test_relations_are_symmetric(random_tables):
    interactions, items = random_tables
    data = build_graph(interactions, items, None, GraphConfig(window_days=None)).data

    assert len(data.edge_types) == 9
    assert data.validate(raise_on_error=True)
    assert data.is_undirected()
    for src, relation, dst in data.edge_types:
        forward = data[src, relation, dst]
        backward = data[dst, relation, src]
        assert forward.edge_index.dtype == torch.int64
        assert forward.edge_weight.dtype == torch.float32
        assert forward.edge_count.dtype == torch.int64
        edges = dict(
            zip(
                map(tuple, forward.edge_index.t().tolist()),
                forward.edge_weight.tolist(),
            )
        )
        reverse = dict(
            zip(
                map(tuple, backward.edge_index.flip(0).t().tolist()),
                backward.edge_weight.tolist(),
            )
        )
        assert edges == reverse
        assert int(forward.edge_index[0].max()) < data[src].num_nodes
        assert int(forward.edge_index[1].max()) < data[dst].num_nodes
    assert "x" not in data["album"]


def test_edges_sorted_and_self_loop_free(random_tables):
    interactions, items = random_tables
    data = build_graph(interactions, items, None, OPEN).data

    for edge_type in data.edge_types:
        edge_index = data[edge_type].edge_index
        keys = edge_index[0] * 1000 + edge_index[1]
        assert torch.all(keys[1:] > keys[:-1])
        if edge_type[0] == edge_type[2]:
            assert not torch.any(edge_index[0] == edge_index[1])


def test_cold_items_are_isolated_nodes():
    items = make_items({"movie": ["a", "b", "cold1", "cold2"], "book": ["x"]})
    interactions = make_interactions([("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 1)])
    result = build_graph(interactions, items, make_features(items), OPEN)

    assert result.data["movie"].num_nodes == 4
    assert result.data["book"].x.shape == (1, 4)
    assert result.stats["isolated_nodes"] == {"book": 1, "movie": 2}
    assert result.stats["items_without_interactions"] == {"book": 1, "movie": 2}
    assert result.stats["relations"] == ["movie__co__movie"]
    assert result.stats["empty_relations"] == [
        "book__co__book",
        "book__co__movie",
        "movie__co__book",
    ]
    assert result.stats["degree"]["node_types"]["movie"]["histogram"] == {
        "0": 2,
        "1": 2,
    }


def test_many_item_types():
    types = {f"type{k}": [f"type{k}:{i}" for i in range(3)] for k in range(5)}
    items = make_items(types)
    rows = []
    for user in range(6):
        for k in range(5):
            rows.append((f"u{user}", f"type{k}:{user % 3}", user + k))
            rows.append((f"u{user}", f"type{k}:{(user + 1) % 3}", user + k))
    result = build_graph(make_interactions(rows), items, None, OPEN)

    assert len(result.data.node_types) == 5
    assert len(result.data.edge_types) == 25
    assert result.stats["empty_relations"] == []
    assert sum(result.stats["edges"].values()) == 2 * result.stats["item_pairs"]["kept"]


def test_features_missing_for_an_item():
    items = make_items({"movie": ["a", "b"]})
    features = ItemEmbeddings(["a"], ["movie"], np.ones((1, 2), np.float32))
    interactions = make_interactions([("u1", "a", 1), ("u1", "b", 1)])

    with pytest.raises(
        GraphInputError, match=r"1 catalog items have no feature row.*'b'"
    ):
        build_graph(interactions, items, features, OPEN)


def test_features_with_another_item_type():
    items = make_items({"movie": ["a", "b"]})
    features = ItemEmbeddings(
        ["a", "b"], ["movie", "book"], np.ones((2, 2), np.float32)
    )
    interactions = make_interactions([("u1", "a", 1), ("u1", "b", 1)])

    with pytest.raises(
        GraphInputError, match="'book' in the features, 'movie' in the catalog"
    ):
        build_graph(interactions, items, features, OPEN)


def test_features_outside_catalog_counted():
    items = make_items({"movie": ["a", "b"]})
    features = ItemEmbeddings(
        ["z", "b", "a"], ["movie"] * 3, np.arange(6, dtype=np.float32).reshape(3, 2)
    )
    interactions = make_interactions([("u1", "a", 1), ("u1", "b", 1)])
    result = build_graph(interactions, items, features, OPEN)

    assert result.stats["features"]["not_in_catalog"] == 1
    assert result.data["movie"].x.tolist() == [[4.0, 5.0], [2.0, 3.0]]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (pd.DataFrame({"item_id": ["a"]}), r"lack column\(s\) \['item_type'\]"),
        (pd.DataFrame({"item_id": [], "item_type": []}), "catalog is empty"),
        (
            pd.DataFrame({"item_id": ["a", "a"], "item_type": ["m", "m"]}),
            "duplicated item_id",
        ),
        (
            pd.DataFrame({"item_id": ["a", None], "item_type": ["m", "m"]}),
            "without a item_id",
        ),
    ],
)
def test_invalid_catalog(items, message):
    interactions = make_interactions([("u1", "a", 1)])
    with pytest.raises(GraphInputError, match=message):
        build_graph(interactions, items, None, OPEN)


@pytest.mark.parametrize("item_type", ["a.b", "a__b", "фильм", "audio book", ""])
def test_invalid_node_types(item_type):
    items = pd.DataFrame({"item_id": ["a"], "item_type": [item_type]})
    interactions = make_interactions([("u1", "a", 1)])

    with pytest.raises(GraphInputError, match="cannot be PyG node types") as error:
        build_graph(interactions, items, None, OPEN)
    assert repr(item_type) in str(error.value)
    assert "ASCII letters, digits, '-' and '_' only, with no '__'" in str(error.value)


def test_valid_node_types():
    items = make_items({"audio-book": ["a"], "Film_2": ["b"], "7": ["c"]})
    interactions = make_interactions([("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3)])
    result = build_graph(interactions, items, None, OPEN)

    assert sorted(result.data.node_types) == ["7", "Film_2", "audio-book"]


def test_edge_count_exact_above_float32():
    catalog = Catalog(
        item_ids=["a", "b"],
        node_types=["movie"],
        type_idx=np.zeros(2, np.int64),
        local_idx=np.arange(2, dtype=np.int64),
    )
    # float32 has a 24-bit significand, so it would round 2^24 + 1 to 2^24.
    count = 2**24 + 1
    pairs = ItemPairs(
        item_i=np.array([0]),
        item_j=np.array([1]),
        count=np.array([count]),
        weight=np.array([1.0]),
        item_users=np.array([count, count]),
    )
    store = assemble_hetero_data(catalog, pairs, None)["movie", "co", "movie"]

    assert store.edge_count.dtype == torch.int64
    assert store.edge_count.tolist() == [count, count]


def test_interactions_without_required_columns():
    items = make_items({"movie": ["a"]})
    interactions = pd.DataFrame({"user": ["u1"], "item_id": ["a"]})
    with pytest.raises(GraphInputError, match=r"lack column\(s\) \['user_id'\]"):
        build_graph(interactions, items, None, OPEN)


def test_interactions_with_epoch_timestamps():
    items = make_items({"movie": ["a"]})
    interactions = pd.DataFrame(
        {"user_id": ["u1"], "item_id": ["a"], "timestamp": [1000]}
    )
    with pytest.raises(GraphInputError, match="has type BIGINT; expected a timestamp"):
        build_graph(interactions, items, None, OPEN)


def test_config_must_be_graph_config():
    items = make_items({"movie": ["a"]})
    with pytest.raises(TypeError, match="GraphConfig.from_dict"):
        build_graph(make_interactions([("u1", "a", 1)]), items, None, {"min_count": 1})


def test_window_that_leaves_no_edges():
    items = make_items({"movie": ["a", "b", "c"]})
    interactions = make_interactions(
        [("u1", "a", 0), ("u1", "b", 1), ("u2", "b", 2), ("u2", "c", 100)]
    )
    with pytest.raises(
        EmptyGraphError, match=r"'window': 2.*raise graph.window_days"
    ) as error:
        build_graph(interactions, items, None, GraphConfig(window_days=30))
    assert (
        "(window: the 30 days before 2020-04-10T00:00:00+00:00, the latest "
        "interaction on a catalog item)"
    ) in str(error.value)


def test_user_window_that_leaves_no_edges():
    items = make_items({"movie": ["a", "b"]})
    interactions = make_interactions([("u1", "a", 0), ("u1", "b", 100)])
    config = GraphConfig(window_days=2.5, window_reference="user")

    with pytest.raises(EmptyGraphError, match=r"'window': 1") as error:
        build_graph(interactions, items, None, config)
    assert "(window: the 2.5 days before each user's latest interaction)" in str(
        error.value
    )


@pytest.mark.parametrize(
    "config",
    [OPEN, GraphConfig(window_days=30, min_count=1, top_k=None)],
    ids=["window off", "window without timestamps"],
)
def test_empty_graph_message_without_window(config):
    items = make_items({"movie": ["a"]})
    interactions = make_interactions([("u1", "a", None), ("u1", "x", None)])

    with pytest.raises(EmptyGraphError) as error:
        build_graph(interactions, items, None, config)
    message = str(error.value)
    assert message == (
        "the graph is empty: the rules left no user with two items that pair up. "
        "Co-occurrences dropped by rule: {'unknown_item': 1}. To keep pairs, "
        "make the interactions name catalog items"
    )


def test_no_usable_interactions():
    items = make_items({"movie": ["a", "b"]})
    interactions = make_interactions(
        [("u1", "a", 1, -1.0), ("u1", "b", 1, float("nan")), (None, "a", 1)]
    )
    with pytest.raises(
        EmptyGraphError,
        match=r"none of the 3 interactions is usable. 1 lack a user_id or item_id "
        r"and 2 have a null, NaN, infinite or negative weight",
    ):
        build_graph(interactions, items, None, OPEN)


def test_support_that_leaves_no_edges():
    items = make_items({"movie": ["a", "b"]})
    interactions = make_interactions([("u1", "a", 0), ("u1", "b", 1)])
    with pytest.raises(EmptyGraphError, match="reaches graph.min_count=5 users.*has 1"):
        build_graph(interactions, items, None, GraphConfig(min_count=5))


def test_only_unknown_items_leave_no_edges():
    items = make_items({"movie": ["a"]})
    interactions = make_interactions([("u1", "x", 0), ("u1", "y", 1)])
    with pytest.raises(
        EmptyGraphError, match="make the interactions name catalog items"
    ):
        build_graph(interactions, items, None, OPEN)


def test_no_interactions():
    items = make_items({"movie": ["a"]})
    with pytest.raises(EmptyGraphError, match="the interactions have no rows"):
        build_graph(make_interactions([]), items, None, OPEN)
