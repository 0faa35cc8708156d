"""Small contract tables and a plain-Python reference of the pair rules."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from gfm.embeddings import ItemEmbeddings
from gfm.graph import GraphConfig


def make_interactions(rows: list[tuple]) -> pd.DataFrame:
    """Build an interactions table from ``(user, item, day or None[, weight])`` rows.

    ``day`` counts days since 2020-01-01, UTC; None leaves the row undated.
    """
    users, items, days, weights = [], [], [], []
    for row in rows:
        users.append(row[0])
        items.append(row[1])
        days.append(row[2])
        weights.append(row[3] if len(row) > 3 else 1.0)
    base = pd.Timestamp("2020-01-01", tz="UTC")
    timestamps = pd.Series(
        [base + pd.Timedelta(days=d) if d is not None else pd.NaT for d in days],
        dtype="datetime64[us, UTC]",
    )
    return pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "timestamp": timestamps,
            "weight": np.asarray(weights, dtype=np.float32),
            "event_type": "play",
        }
    )


def make_items(types: dict[str, list[str]]) -> pd.DataFrame:
    """Build a catalog from ``{item_type: [item ids]}``, in that order."""
    ids = [item_id for ids in types.values() for item_id in ids]
    kinds = [kind for kind, ids in types.items() for _ in ids]
    return pd.DataFrame({"item_id": ids, "item_type": kinds, "title": ids})


def make_features(items: pd.DataFrame, dim: int = 4, seed: int = 0) -> ItemEmbeddings:
    """Random unit-norm features for every catalog item, in shuffled order."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    matrix = rng.normal(size=(len(items), dim)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return ItemEmbeddings(
        item_ids=items["item_id"].iloc[order].tolist(),
        item_types=items["item_type"].iloc[order].tolist(),
        matrix=matrix,
    )


def reference_pair_counts(
    interactions: pd.DataFrame, items: pd.DataFrame, config: GraphConfig
) -> Counter:
    """Count co-consuming users per unordered item-id pair, rule by rule.

    An independent, quadratic restatement of the rules of ``GraphConfig``
    (before support and top-k), for cross-checking the DuckDB chain.
    """
    position = {item_id: i for i, item_id in enumerate(items["item_id"])}
    valid = interactions.dropna(subset=["user_id", "item_id"])
    weights = valid["weight"].astype(float)
    valid = valid[np.isfinite(weights) & (weights >= 0)]
    merged = (
        valid.groupby(["user_id", "item_id"], sort=False)
        .agg(ts=("timestamp", "max"), w=("weight", "sum"))
        .reset_index()
    )
    merged = merged[merged["item_id"].isin(position)]
    # Unknown items are dropped before the window, so only catalog items set
    # the reference times.
    latest = merged["ts"].max()
    days = config.window_days
    counts: Counter = Counter()
    for _, history in merged.groupby("user_id"):
        user_latest = history["ts"].max()
        if config.untimed == "drop":
            history = history[history["ts"].notna()]
        if days is not None and pd.notna(latest):
            reference = latest if config.window_reference == "global" else user_latest
            if pd.notna(reference):
                cutoff = reference - pd.Timedelta(days=days)
                history = history[history["ts"].isna() | (history["ts"] >= cutoff)]
        ranked = sorted(
            history.itertuples(index=False),
            key=lambda r: (
                0 if pd.isna(r.ts) else 1,
                0 if pd.isna(r.ts) else -r.ts.value,
                -r.w,
                position[r.item_id],
            ),
        )
        if config.max_items_per_user is not None:
            ranked = ranked[: config.max_items_per_user]
        for (p, a), (q, b) in itertools.combinations(enumerate(ranked), 2):
            if config.max_distance is not None and q - p > config.max_distance:
                continue
            pair = tuple(sorted((a.item_id, b.item_id), key=position.__getitem__))
            counts[pair] += 1
    return counts


def graph_pair_counts(data, item_ids_by_type: dict[str, list[str]]) -> Counter:
    """Read ``edge_count`` of every undirected edge of a graph, by item-id pair."""
    counts: Counter = Counter()
    for edge_type in data.edge_types:
        src_type, _, dst_type = edge_type
        store = data[edge_type]
        for (s, d), c in zip(store.edge_index.t().tolist(), store.edge_count.tolist()):
            a, b = item_ids_by_type[src_type][s], item_ids_by_type[dst_type][d]
            counts[(a, b)] = int(c)
    return counts


@pytest.fixture
def random_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """305 interactions of 25 users over 24 items of three types.

    About a tenth are undated, some repeat a (user, item) pair and a few name
    items outside the catalog. One of those is dated years after every other
    row, and four rows have a NaN, infinite or negative weight.
    """
    rng = np.random.default_rng(7)
    items = make_items(
        {
            "album": [f"album:{i}" for i in range(10)],
            "show": [f"show:{i}" for i in range(8)],
            "tag": [f"tag:{i}" for i in range(6)],
        }
    )
    ids = items["item_id"].tolist() + ["ghost:1", "ghost:2"]
    rows = []
    for _ in range(300):
        user = f"u{rng.integers(25)}"
        item = ids[rng.integers(len(ids))]
        day = None if rng.random() < 0.1 else int(rng.integers(0, 400))
        rows.append((user, item, day, float(rng.integers(1, 6))))
    rows += [
        ("u1", "ghost:1", 5000, 1.0),
        ("u2", "album:1", 10, float("nan")),
        ("u3", "show:2", 20, -1.0),
        ("u4", "tag:3", None, float("-inf")),
        ("u5", "album:4", 30, float("inf")),
    ]
    return make_interactions(rows), items
