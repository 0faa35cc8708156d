"""Build the heterogeneous item co-interaction graph from training interactions."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from torch_geometric.data import HeteroData

from gfm.embeddings import ItemEmbeddings
from gfm.graph.config import GraphConfig
from gfm.graph.cooccurrence import ItemPairs, count_item_pairs
from gfm.graph.errors import EmptyGraphError, GraphInputError
from gfm.graph.hetero import (
    Catalog,
    assemble_hetero_data,
    expected_edge_types,
    relation_key,
)
from gfm.graph.source import Interactions, register_interactions
from gfm.graph.stats import graph_summary
from gfm.logging_setup import progress_enabled

logger = logging.getLogger(__name__)

# A node type becomes a key of torch ModuleDicts in PyG's to_hetero, which
# rejects "." and reserves "__" as the separator of edge type names. The
# check is stricter than that: ASCII letters, digits, "-" and "_" only, and
# no "__".
_NODE_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
_NODE_TYPE_RULE = "ASCII letters, digits, '-' and '_' only, with no '__'"

# Ids named in an error about misaligned features.
_EXAMPLES = 5


@dataclass
class GraphResult:
    """A built graph and its statistics.

    Attributes:
        data: the ``HeteroData`` in the layout of ``docs/architecture.md``.
        stats: the JSON-ready ``stats.json`` document (see ``docs/graph.md``).
    """

    data: HeteroData
    stats: dict[str, Any]


def build_graph(
    interactions: Interactions,
    items: pd.DataFrame,
    features: ItemEmbeddings | None,
    config: GraphConfig,
) -> GraphResult:
    """Build the co-interaction graph of a catalog from its interactions.

    Args:
        interactions: training interactions as a DataFrame, an Arrow table,
            or a Parquet file, folder or glob (local or ``gs://``), in the
            interactions schema of ``gfm.data.schema``.
        items: the catalog, one row per item, with ``item_id`` and
            ``item_type``; every item becomes a node, with or without edges.
        features: LLM features of every catalog item, or None to build the
            edges alone (``x`` is then left out).
        config: the build settings.

    Returns:
        The graph and its statistics.

    Raises:
        GraphInputError: if the catalog, interactions or features are
            invalid (``UnknownItemsError`` for unknown items in strict mode).
        EmptyGraphError: if the settings leave no edge; the message names the
            setting to change.
    """
    if not isinstance(config, GraphConfig):
        raise TypeError(
            f"config must be a GraphConfig, got {type(config).__name__}; "
            "use GraphConfig.from_dict(mapping)"
        )
    start = time.perf_counter()
    catalog = _catalog(items)
    matrix, feature_stats = _align_features(catalog, features)
    logger.info(
        "building the co-interaction graph of %d items of %d type(s) %s",
        len(catalog.item_ids),
        len(catalog.node_types),
        catalog.node_types,
    )

    pairs = _count_pairs(interactions, catalog, config)
    if pairs.item_i.size == 0:
        raise EmptyGraphError(_empty_graph_message(pairs.stats, config))

    data = assemble_hetero_data(catalog, pairs, matrix)
    item_users = {
        node_type: pairs.item_users[catalog.type_idx == position]
        for position, node_type in enumerate(catalog.node_types)
    }
    stats = _graph_stats(data, item_users, pairs.stats, feature_stats, config)
    stats["duration_s"] = round(time.perf_counter() - start, 3)
    logger.info(
        "built the graph in %.1f s: nodes %s, edges %s, isolated nodes %s",
        stats["duration_s"],
        stats["nodes"],
        stats["edges"],
        stats["isolated_nodes"],
    )
    return GraphResult(data=data, stats=stats)


def _catalog(items: pd.DataFrame) -> Catalog:
    if not isinstance(items, pd.DataFrame):
        raise GraphInputError(
            f"items must be a pandas DataFrame, got {type(items).__name__}"
        )
    missing = [c for c in ("item_id", "item_type") if c not in items.columns]
    if missing:
        raise GraphInputError(
            f"items lack column(s) {missing}; found {list(items.columns)}. "
            "Use the items schema of gfm.data.schema"
        )
    if items.empty:
        raise GraphInputError("the catalog is empty: items has no rows")
    for column in ("item_id", "item_type"):
        nulls = int(items[column].isna().sum())
        if nulls:
            raise GraphInputError(f"items has {nulls} rows without a {column}")
    item_ids = items["item_id"].astype(str)
    duplicated = item_ids[item_ids.duplicated()].unique().tolist()
    if duplicated:
        raise GraphInputError(
            f"items has {len(duplicated)} duplicated item_id values, for example "
            f"{duplicated[:_EXAMPLES]}; item ids must be unique across types"
        )

    types = items["item_type"].astype(str)
    node_types = sorted(types.unique().tolist())
    invalid = [t for t in node_types if not _NODE_TYPE_PATTERN.match(t) or "__" in t]
    if invalid:
        raise GraphInputError(
            f"item types {invalid} cannot be PyG node types; rename them in the "
            f"catalog's item_type to {_NODE_TYPE_RULE}"
        )
    type_idx = types.map({t: i for i, t in enumerate(node_types)}).to_numpy(np.int64)
    local_idx = types.groupby(types).cumcount().to_numpy(np.int64)
    return Catalog(
        item_ids=item_ids.tolist(),
        node_types=node_types,
        type_idx=type_idx,
        local_idx=local_idx,
    )


def _align_features(
    catalog: Catalog, features: ItemEmbeddings | None
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Return the feature matrix in catalog order and its counts."""
    if features is None:
        return None, {"dim": None, "not_in_catalog": 0}
    if not isinstance(features, ItemEmbeddings):
        raise GraphInputError(
            f"features must be gfm.embeddings.ItemEmbeddings or None, got "
            f"{type(features).__name__}"
        )

    index = features.index()
    missing = [item_id for item_id in catalog.item_ids if item_id not in index]
    if missing:
        raise GraphInputError(
            f"{len(missing)} catalog items have no feature row, for example "
            f"{missing[:_EXAMPLES]}; featurize this catalog again so every item "
            "has an embedding"
        )

    rows = np.fromiter(
        (index[i] for i in catalog.item_ids), np.int64, len(catalog.item_ids)
    )
    feature_types = np.asarray(features.item_types, dtype=object)[rows]
    catalog_types = np.asarray(catalog.node_types, dtype=object)[catalog.type_idx]
    mismatched = np.flatnonzero(feature_types != catalog_types)
    if mismatched.size:
        first = int(mismatched[0])
        raise GraphInputError(
            f"{mismatched.size} items have another item_type in the features than "
            f"in the catalog, for example {catalog.item_ids[first]!r}: "
            f"{feature_types[first]!r} in the features, {catalog_types[first]!r} "
            "in the catalog; featurize this catalog again"
        )

    not_in_catalog = len(features) - len(catalog.item_ids)
    if not_in_catalog:
        logger.info(
            "%d feature rows name items outside the catalog; unused", not_in_catalog
        )
    return features.matrix[rows], {
        "dim": features.dim,
        "not_in_catalog": not_in_catalog,
    }


def _count_pairs(
    interactions: Interactions, catalog: Catalog, config: GraphConfig
) -> ItemPairs:
    """Run the DuckDB chain in a private working folder, removed afterwards."""
    if config.temp_directory is not None:
        Path(config.temp_directory).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="gfm-graph-", dir=config.temp_directory))
    table = pd.DataFrame(
        {
            "item_id": catalog.item_ids,
            "item_idx": np.arange(len(catalog.item_ids), dtype=np.int32),
            "type_idx": catalog.type_idx.astype(np.int32),
        }
    )
    duckdb_config: dict[str, Any] = {
        "memory_limit": config.memory_limit,
        "temp_directory": str(workdir / "spill"),
        "preserve_insertion_order": False,
    }
    if config.threads is not None:
        duckdb_config["threads"] = config.threads
    con = duckdb.connect(str(workdir / "graph.duckdb"), config=duckdb_config)
    try:
        # DuckDB draws its bar on stderr even when stderr is a log file.
        con.execute(f"SET enable_progress_bar = {str(progress_enabled()).lower()}")
        register_interactions(con, interactions, workdir)
        return count_item_pairs(con, table, config)
    finally:
        con.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _graph_stats(
    data: HeteroData,
    item_users: dict[str, np.ndarray],
    pair_stats: dict[str, Any],
    feature_stats: dict[str, Any],
    config: GraphConfig,
) -> dict[str, Any]:
    summary = graph_summary(data, item_users)
    expected = [relation_key(t) for t in expected_edge_types(list(summary["nodes"]))]
    empty = [key for key in expected if key not in summary["edges"]]
    if empty:
        logger.warning(
            "%d of %d relations have no edges and are left out of the graph: %s",
            len(empty),
            len(expected),
            empty,
        )
    isolated = summary["isolated_nodes"]
    for node_type, count in isolated.items():
        if count:
            logger.info(
                "%d of %d %s nodes have no edges (cold); %d of them have no "
                "kept interactions",
                count,
                summary["nodes"][node_type],
                node_type,
                summary["items_without_interactions"][node_type],
            )
    return {
        **summary,
        "relations": [key for key in expected if key in summary["edges"]],
        "empty_relations": empty,
        "features": feature_stats,
        **pair_stats,
        "config": config.to_dict(),
    }


def _empty_graph_message(stats: dict[str, Any], config: GraphConfig) -> str:
    pairs = stats["item_pairs"]
    if pairs["distinct"]:
        return (
            f"the graph is empty: none of the {pairs['distinct']} co-occurring item "
            f"pairs reaches graph.min_count={config.min_count} users (the most "
            f"co-consumed pair has {pairs['max_count']}); lower graph.min_count"
        )
    rows = stats["interactions"]["rows"]
    if rows == 0:
        return "the graph is empty: the interactions have no rows"
    if stats["user_items"]["total"] == 0:
        row_drops = stats["interactions_dropped"]
        return (
            f"the graph is empty: none of the {rows} interactions is usable. "
            f"{row_drops['missing_id']} lack a user_id or item_id and "
            f"{row_drops['invalid_weight']} have a null, NaN, infinite or negative "
            "weight; fix the interactions"
        )
    dropped = {rule: n for rule, n in stats["co_occurrences_dropped"].items() if n}
    if not dropped:
        return (
            f"the graph is empty: none of the {stats['users']['total']} users has "
            "two interactions on catalog items, so no item pair co-occurs"
        )
    fixes = [
        _RULE_FIXES[rule] for rule in sorted(dropped, key=dropped.get, reverse=True)
    ]
    return (
        "the graph is empty: the rules left no user with two items that pair up. "
        f"Co-occurrences dropped by rule: {dropped}{_window_clause(stats['window'])}. "
        f"To keep pairs, {', or '.join(fixes)}"
    )


def _window_clause(window: dict[str, Any]) -> str:
    """Describe the applied window for an error, or return "" when it was off."""
    if not window["applied"]:
        return ""
    if window["reference"] == "global":
        return (
            f" (window: the {window['days']:g} days before "
            f"{window['latest_timestamp']}, the latest interaction on a catalog item)"
        )
    return (
        f" (window: the {window['days']:g} days before each user's latest interaction)"
    )


# The setting to change when a rule drops every co-occurrence.
_RULE_FIXES = {
    "unknown_item": "make the interactions name catalog items",
    "untimed": "set graph.untimed='keep'",
    "window": "raise graph.window_days or set it to null",
    "user_cap": "raise graph.max_items_per_user",
    "distance": "raise graph.max_distance",
}
