"""Pair counting, the interaction rules, weights, support and top-k."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from gfm.graph import EmptyGraphError, GraphConfig, UnknownItemsError, build_graph

from .conftest import (
    graph_pair_counts,
    make_interactions,
    make_items,
    reference_pair_counts,
)

# Keep every pair, so edge counts are the raw co-counts of the rules.
ALL_PAIRS = {"min_count": 1, "top_k": None}


def _ids_by_type(items):
    return {
        kind: group["item_id"].tolist() for kind, group in items.groupby("item_type")
    }


def _undirected(counts):
    return {tuple(sorted(pair)): c for pair, c in counts.items()}


@pytest.mark.parametrize(
    "settings",
    [
        {"window_days": None, "max_distance": None, "max_items_per_user": None},
        {"window_days": None, "max_distance": 2, "max_items_per_user": None},
        {"window_days": 120, "max_distance": 3, "max_items_per_user": 6},
        {"window_days": 90, "window_reference": "user", "max_distance": None},
        {"window_days": 200, "untimed": "drop", "max_distance": 1},
    ],
)
def test_pair_counts_match_reference(random_tables, settings):
    interactions, items = random_tables
    config = GraphConfig.from_dict({**ALL_PAIRS, **settings})
    result = build_graph(interactions, items, None, config)

    expected = reference_pair_counts(interactions, items, config)
    actual = _undirected(graph_pair_counts(result.data, _ids_by_type(items)))
    expected = _undirected(expected)
    assert actual == expected
    assert result.stats["co_occurrences"]["kept"] == sum(expected.values())
    assert result.stats["item_pairs"]["distinct"] == len(expected)


def test_rule_drops_match_hand_counts():
    items = make_items({"movie": ["a", "b", "c", "d", "e"]})
    interactions = make_interactions(
        [
            # u1 repeats a, names the unknown "ghost" and has an undated e.
            ("u1", "a", 100),
            ("u1", "a", 98),
            ("u1", "b", 99),
            ("u1", "c", 98),
            ("u1", "d", 97),
            ("u1", "ghost", 96),
            ("u1", "e", None),
            # u2's c is older than the 10-day window before day 100.
            ("u2", "a", 100),
            ("u2", "b", 95),
            ("u2", "c", 50),
            ("u3", "b", 99),
            ("u3", "c", 98),
            ("u3", "a", 99, -1.0),
            ("u4", "d", 93),
            ("u4", "e", 92),
            ("u4", "c", 93, float("nan")),
            ("u5", "a", 94),
            (None, "a", 100),
            # An unknown item dated after every other row sets no reference.
            ("u6", "ghost", 400),
        ]
    )
    config = GraphConfig(
        window_days=10,
        untimed="drop",
        max_items_per_user=3,
        max_distance=1,
        min_count=2,
        top_k=1,
        top_k_mode="mutual",
    )
    result = build_graph(interactions, items, None, config)
    stats = result.stats

    # Worked out by hand. The table gives each user's (user, item) count n
    # after each rule. The cap of 3 drops u1's oldest item, d.
    #
    #   user  all  known  dated  in window  capped
    #   u1      6      5      4          4       3
    #   u2      3      3      3          2       2
    #   u3      2      2      2          2       2
    #   u4      2      2      2          2       2
    #   u5      1      1      1          1       1
    #   u6      1      0      0          0       0
    #
    # Co-occurrences are n * (n - 1) / 2 summed per column: 20 15 11 9 6.
    # Distance 1 keeps a-b and b-c of u1 and one pair each of u2, u3, u4: 5.
    assert stats["interactions"] == {"rows": 19, "undated": 1, "duplicates_merged": 1}
    assert stats["interactions_dropped"] == {
        "missing_id": 1,
        "invalid_weight": 2,
        "unknown_item": 2,
        "untimed": 1,
        "window": 1,
    }
    assert stats["user_items"] == {"total": 15, "kept": 10}
    assert stats["user_items_dropped"] == {
        "unknown_item": 2,
        "untimed": 1,
        "window": 1,
        "user_cap": 1,
    }
    assert stats["unknown_items"] == {"ids": 1, "examples": ["ghost"]}
    assert stats["users"] == {"total": 6, "kept": 5, "with_pairs": 4, "capped": 1}
    assert stats["window"]["latest_timestamp"].startswith("2020-04-10")
    assert stats["window"]["cutoff"].startswith("2020-03-31")
    assert stats["co_occurrences"] == {"possible": 20, "kept": 5}
    assert stats["co_occurrences_dropped"] == {
        "unknown_item": 5,
        "untimed": 4,
        "window": 2,
        "user_cap": 3,
        "distance": 1,
    }
    # Pairs: a-b by u1 and u2, b-c by u1 and u3, d-e by u4 alone. Support 2
    # drops d-e. Jaccard: a-b 2 / (3 + 3 - 2) = 0.5, b-c 2 / (3 + 2 - 2).
    # b's best neighbor is c, so mutual top-1 drops a-b.
    assert stats["item_pairs"] == {
        "distinct": 3,
        "max_count": 2,
        "after_support": 2,
        "kept": 1,
    }
    assert stats["item_pairs_dropped"] == {"support": 1, "top_k": 1}
    store = result.data["movie", "co", "movie"]
    assert store.edge_index.tolist() == [[1, 2], [2, 1]]
    assert store.edge_count.tolist() == [2, 2]
    assert store.edge_weight.tolist() == pytest.approx([2 / 3, 2 / 3])


def test_unknown_items_leave_window_alone():
    items = make_items({"movie": ["a", "b"]})
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 1), ("u2", "b", 3)]
    config = GraphConfig(window_days=30, **ALL_PAIRS)
    expected = build_graph(make_interactions(rows), items, None, config)
    # One row on an item missing from the catalog, five years later.
    ghost = ("u9", "ghost", 5 * 365)
    result = build_graph(make_interactions([*rows, ghost]), items, None, config)

    ids = _ids_by_type(items)
    assert graph_pair_counts(result.data, ids) == graph_pair_counts(expected.data, ids)
    assert result.stats["window"] == expected.stats["window"]
    assert result.stats["window"]["latest_timestamp"].startswith("2020-01-04")
    assert result.stats["interactions_dropped"]["unknown_item"] == 1
    assert result.stats["interactions_dropped"]["window"] == 0


def test_unknown_items_leave_user_window_alone():
    items = make_items({"movie": ["a", "b"]})
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 1), ("u2", "b", 3)]
    config = GraphConfig(window_days=30, window_reference="user", **ALL_PAIRS)
    # u1's own row on an unknown item, a year after u1's catalog items.
    interactions = make_interactions([*rows, ("u1", "ghost", 400)])
    result = build_graph(interactions, items, None, config)

    counts = _undirected(graph_pair_counts(result.data, _ids_by_type(items)))
    assert counts == {("a", "b"): 2}
    assert result.stats["interactions_dropped"]["window"] == 0


@pytest.mark.parametrize("source", ["pandas", "arrow"])
def test_invalid_weights_counted_and_dropped(source):
    items = make_items({"movie": ["a", "b", "c"]})
    rows = [("u1", "a", 1, 2.0), ("u1", "b", 2, 0.0), ("u2", "a", 1), ("u2", "b", 3)]
    invalid = [
        ("u1", "c", 3, float("nan")),
        ("u2", "c", 3, -1.0),
        ("u3", "a", 1, float("inf")),
        ("u3", "c", 1, float("-inf")),
    ]
    interactions = make_interactions(rows + invalid)
    if source == "arrow":
        # Table.from_pandas turns NaN into null; keep a real NaN here.
        table = pa.Table.from_pandas(interactions, preserve_index=False)
        weights = pa.array(interactions["weight"].to_numpy(), from_pandas=False)
        interactions = table.set_column(
            table.schema.get_field_index("weight"), "weight", weights
        )
        assert interactions["weight"].null_count == 0
    config = GraphConfig(window_days=None, **ALL_PAIRS)
    result = build_graph(interactions, items, None, config)

    stats = result.stats
    assert stats["interactions"]["rows"] == 8
    assert stats["interactions_dropped"]["invalid_weight"] == 4
    assert stats["user_items"]["total"] == 4
    assert stats["users"]["total"] == 2
    # A zero weight is valid.
    counts = _undirected(graph_pair_counts(result.data, _ids_by_type(items)))
    assert counts == {("a", "b"): 2}


def test_repeated_interactions_count_once():
    items = make_items({"movie": ["m1", "m2"]})
    interactions = make_interactions(
        [
            ("u1", "m1", 1),
            ("u1", "m1", 2),
            ("u1", "m2", 3),
            ("u2", "m1", 1),
            ("u2", "m2", 1),
        ]
    )
    result = build_graph(
        interactions, items, None, GraphConfig(window_days=None, **ALL_PAIRS)
    )

    store = result.data["movie", "co", "movie"]
    assert store.edge_count.tolist() == [2.0, 2.0]
    assert result.stats["interactions"]["duplicates_merged"] == 1
    assert result.stats["user_items"]["total"] == 4


def test_jaccard_and_pmi_weights():
    items = make_items({"movie": ["a", "b", "c"]})
    # a: u1 u2 u3, b: u1 u2, c: u3 u4; four users in all.
    interactions = make_interactions(
        [
            ("u1", "a", 1),
            ("u1", "b", 1),
            ("u2", "a", 1),
            ("u2", "b", 1),
            ("u3", "a", 1),
            ("u3", "c", 1),
            ("u4", "c", 1),
            ("u4", "b", 1),
        ]
    )
    weights = {}
    for weight in ("jaccard", "pmi"):
        config = GraphConfig(window_days=None, weight=weight, **ALL_PAIRS)
        store = build_graph(interactions, items, None, config).data[
            "movie", "co", "movie"
        ]
        pairs = zip(store.edge_index.t().tolist(), store.edge_weight.tolist())
        weights[weight] = {tuple(edge): w for edge, w in pairs}

    # a-b: c=2, n_a=3, n_b=3.  a-c: c=1, n_a=3, n_c=2.  b-c: c=1, n_b=3, n_c=2.
    assert weights["jaccard"][(0, 1)] == pytest.approx(2 / 4)
    assert weights["jaccard"][(0, 2)] == pytest.approx(1 / 4)
    assert weights["jaccard"][(2, 1)] == pytest.approx(1 / 4)
    assert weights["pmi"][(0, 1)] == pytest.approx(math.log(2 * 4 / 9), rel=1e-6)
    assert weights["pmi"][(1, 0)] == pytest.approx(math.log(2 * 4 / 9), rel=1e-6)
    assert weights["pmi"][(0, 2)] == pytest.approx(math.log(1 * 4 / 6), rel=1e-6)


def test_min_count_drops_rare_pairs():
    items = make_items({"movie": ["a", "b", "c"]})
    interactions = make_interactions(
        [("u1", "a", 1), ("u1", "b", 1), ("u2", "a", 1), ("u2", "b", 1), ("u2", "c", 1)]
    )
    result = build_graph(
        interactions,
        items,
        None,
        GraphConfig(window_days=None, min_count=2, top_k=None),
    )

    assert result.stats["item_pairs"]["distinct"] == 3
    assert result.stats["item_pairs_dropped"]["support"] == 2
    assert result.data["movie", "co", "movie"].edge_index.tolist() == [[0, 1], [1, 0]]
    assert result.stats["isolated_nodes"] == {"movie": 1}


def _star_tables():
    """A hub item "h" paired with spokes s0..s4 and spoke pairs s0-s1, s0-s2."""
    items = make_items({"movie": ["h", "s0", "s1", "s2", "s3", "s4"]})
    rows = []
    for k in range(5):
        for u in range(5 - k):
            rows += [(f"hub{k}-{u}", "h", 1), (f"hub{k}-{u}", f"s{k}", 1)]
    rows += [("x1", "s0", 1), ("x1", "s1", 1), ("x2", "s0", 1), ("x2", "s2", 1)]
    return make_interactions(rows), items


def test_top_k_union_keeps_best_neighbor():
    interactions, items = _star_tables()
    config = GraphConfig(
        window_days=None, min_count=1, top_k=1, top_k_mode="union", weight="jaccard"
    )
    result = build_graph(interactions, items, None, config)

    degrees = result.stats["degree"]["node_types"]["movie"]
    store = result.data["movie", "co", "movie"]
    edges = {tuple(e) for e in store.edge_index.t().tolist()}
    # Every spoke's best neighbor is the hub, so the hub keeps all five.
    assert {(0, k) for k in range(1, 6)} <= edges
    assert degrees["max"] == 5
    assert degrees["min"] == 1
    assert result.stats["isolated_nodes"] == {"movie": 0}


def test_top_k_mutual_bounds_degree():
    interactions, items = _star_tables()
    config = GraphConfig(window_days=None, min_count=1, top_k=1, top_k_mode="mutual")
    result = build_graph(interactions, items, None, config)

    degrees = result.stats["degree"]["node_types"]["movie"]
    assert degrees["max"] == 1
    assert result.stats["item_pairs"]["kept"] == 1
    assert result.stats["item_pairs_dropped"]["top_k"] == 6


def test_window_counts_old_interactions():
    items = make_items({"movie": ["a", "b", "c"]})
    interactions = make_interactions(
        [
            ("u1", "a", 0),
            ("u1", "b", 200),
            ("u1", "c", 205),
            ("u2", "b", 201),
            ("u2", "c", 202),
            ("u2", "a", 10),
        ]
    )
    result = build_graph(
        interactions, items, None, GraphConfig(window_days=30, **ALL_PAIRS)
    )

    stats = result.stats
    assert stats["window"]["applied"] is True
    assert stats["window"]["cutoff"].startswith("2020-06-24")
    assert stats["interactions_dropped"]["window"] == 2
    assert stats["user_items_dropped"]["window"] == 2
    assert stats["co_occurrences_dropped"]["window"] == 4
    assert result.data["movie", "co", "movie"].edge_index.size(1) == 2


def test_window_per_user_reference():
    items = make_items({"movie": ["a", "b"]})
    # u1 is active years before u2, but its own two items lie a day apart.
    interactions = make_interactions(
        [("u1", "a", 0), ("u1", "b", 1), ("u2", "a", 900), ("u2", "b", 901)]
    )
    global_window = GraphConfig(window_days=10, **ALL_PAIRS)
    user_window = GraphConfig(window_days=10, window_reference="user", **ALL_PAIRS)

    by_global = build_graph(interactions, items, None, global_window)
    by_user = build_graph(interactions, items, None, user_window)

    assert by_global.data["movie", "co", "movie"].edge_count.tolist() == [1.0, 1.0]
    assert by_user.data["movie", "co", "movie"].edge_count.tolist() == [2.0, 2.0]
    assert by_user.stats["window"]["cutoff"] is None


def test_undated_rows_keep_or_drop():
    items = make_items({"artist": ["a1", "a2"], "tag": ["t1"]})
    interactions = make_interactions(
        [
            ("u1", "a1", None, 10.0),
            ("u1", "a2", None, 3.0),
            ("u1", "t1", 5),
            ("u2", "a1", None, 1.0),
            ("u2", "t1", 6),
        ]
    )
    keep = build_graph(interactions, items, None, GraphConfig(**ALL_PAIRS))

    assert keep.stats["interactions"]["undated"] == 3
    assert keep.stats["window"]["applied"] is True
    assert keep.data["artist", "co", "tag"].edge_count.tolist() == [2.0, 1.0]
    assert keep.data["artist", "co", "artist"].edge_index.size(1) == 2
    # Without the undated listens every user keeps one tag: no pair is left.
    with pytest.raises(EmptyGraphError, match=r"'untimed': 4.*graph.untimed='keep'"):
        build_graph(interactions, items, None, GraphConfig(untimed="drop", **ALL_PAIRS))


def test_undated_rows_rank_most_recent():
    items = make_items({"movie": ["old", "new", "heavy", "light"]})
    interactions = make_interactions(
        [
            ("u1", "old", 1),
            ("u1", "new", 50),
            ("u1", "heavy", None, 9.0),
            ("u1", "light", None, 1.0),
            ("u2", "old", 1),
            ("u2", "new", 2),
        ]
    )
    # Recency order of u1: heavy, light, new, old; distance 1 pairs neighbors.
    config = GraphConfig(window_days=None, max_distance=1, **ALL_PAIRS)
    result = build_graph(interactions, items, None, config)

    counts = _undirected(graph_pair_counts(result.data, _ids_by_type(items)))
    assert counts == {("heavy", "light"): 1, ("light", "new"): 1, ("new", "old"): 2}


def test_user_cap_keeps_most_recent_items():
    items = make_items({"movie": ["a", "b", "c", "d"]})
    interactions = make_interactions(
        [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 4)]
    )
    config = GraphConfig(window_days=None, max_items_per_user=2, **ALL_PAIRS)
    result = build_graph(interactions, items, None, config)

    store = result.data["movie", "co", "movie"]
    assert store.edge_index.tolist() == [[2, 3], [3, 2]]
    assert result.stats["users"]["capped"] == 1
    assert result.stats["user_items_dropped"]["user_cap"] == 2
    assert result.stats["co_occurrences_dropped"]["user_cap"] == 5


def test_unknown_items_counted_or_strict():
    items = make_items({"movie": ["a", "b"]})
    interactions = make_interactions(
        [
            ("u1", "a", 1),
            ("u1", "b", 1),
            ("u1", "zz", 1),
            ("u2", "zz", 1),
            ("u2", "yy", 2),
        ]
    )
    result = build_graph(
        interactions, items, None, GraphConfig(window_days=None, **ALL_PAIRS)
    )

    stats = result.stats
    assert stats["interactions_dropped"]["unknown_item"] == 3
    assert stats["unknown_items"]["ids"] == 2
    assert stats["unknown_items"]["examples"] == ["zz", "yy"]
    assert stats["co_occurrences_dropped"]["unknown_item"] == 3
    with pytest.raises(UnknownItemsError, match="2 item ids missing from the catalog"):
        build_graph(interactions, items, None, GraphConfig(strict=True))
