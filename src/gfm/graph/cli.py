"""``gfm graph build`` and ``gfm graph stats``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``graph`` subcommands to the ``gfm`` parser."""
    graph = subparsers.add_parser(
        "graph",
        help="build or inspect the item co-interaction graph",
        description="Build or inspect the heterogeneous item co-interaction graph.",
    )
    commands = graph.add_subparsers(dest="graph_command", metavar="COMMAND")
    commands.required = True

    build = commands.add_parser(
        "build",
        help="build graph.pt and stats.json from interactions",
        description="Count item co-interactions into a HeteroData folder.",
    )
    build.add_argument(
        "--items",
        required=True,
        help="items Parquet file, or a dataset folder with items.parquet",
    )
    build.add_argument(
        "--interactions",
        required=True,
        help="interactions Parquet file, folder or glob (local or gs://)",
    )
    build.add_argument(
        "--embeddings",
        default=None,
        help="ItemEmbeddings folder of node features (default: no features)",
    )
    build.add_argument(
        "--config",
        default=None,
        help="JSON or YAML mapping of GraphConfig settings, inline or @FILE",
    )
    build.add_argument("--out", required=True, help="output folder or gs:// prefix")
    build.set_defaults(func=_build)

    stats = commands.add_parser(
        "stats",
        help="print the stats.json of a graph folder",
        description="Print node, edge and drop counts of a built graph.",
    )
    stats.add_argument("graph", help="graph folder or gs:// prefix")
    stats.set_defaults(func=_stats)


def _build(args: argparse.Namespace) -> int:
    from gfm import storage
    from gfm.embeddings import ItemEmbeddings
    from gfm.graph import (
        EmptyGraphError,
        GraphConfig,
        GraphInputError,
        build_graph,
        save_graph,
    )

    try:
        config = GraphConfig.from_dict(_config_mapping(args.config))
    except (OSError, ValueError) as error:
        print(f"gfm graph build: invalid --config: {error}", file=sys.stderr)
        return 2
    # Invalid inputs and settings that leave no edge are the caller's to fix,
    # so they get one line and exit code 2 in place of a traceback.
    try:
        items_uri = args.items
        if not items_uri.endswith(".parquet"):
            items_uri = storage.join(items_uri, "items.parquet")
        items = storage.read_table(
            items_uri, columns=["item_id", "item_type"]
        ).to_pandas()
        features = ItemEmbeddings.load(args.embeddings) if args.embeddings else None
        result = build_graph(args.interactions, items, features, config)
    except (FileNotFoundError, GraphInputError, EmptyGraphError) as error:
        print(f"gfm graph build: {error}", file=sys.stderr)
        return 2
    save_graph(result, args.out)
    print(json.dumps(_summary(result.stats), indent=2))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from gfm import storage
    from gfm.graph.io import STATS_FILE

    print(json.dumps(storage.read_json(storage.join(args.graph, STATS_FILE)), indent=2))
    return 0


def _summary(stats: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "nodes",
        "edges",
        "isolated_nodes",
        "empty_relations",
        "co_occurrences_dropped",
        "item_pairs_dropped",
        "duration_s",
    )
    return {key: stats[key] for key in keys}


def _config_mapping(value: str | None) -> dict[str, Any]:
    """Parse ``--config``: a JSON or YAML mapping, inline or ``@FILE``."""
    import yaml

    if not value:
        return {}
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as handle:
            value = handle.read()
    try:
        mapping = yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise ValueError(f"not JSON or YAML: {error}") from error
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise ValueError(f"expected a mapping of settings, got {mapping!r}")
    return mapping
