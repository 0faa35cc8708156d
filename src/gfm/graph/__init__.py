"""The heterogeneous item co-interaction graph, built with DuckDB.

Items that one user consumed close together in time become neighbors: one
PyG node type per item type and one ``(t1, "co", t2)`` relation per pair of
item types, with raw co-counts and a normalized weight on every edge.
"""

from gfm.graph.build import GraphResult, build_graph
from gfm.graph.config import GraphConfig
from gfm.graph.errors import EmptyGraphError, GraphInputError, UnknownItemsError
from gfm.graph.io import load_graph, save_graph

__all__ = [
    "EmptyGraphError",
    "GraphConfig",
    "GraphInputError",
    "GraphResult",
    "UnknownItemsError",
    "build_graph",
    "load_graph",
    "save_graph",
]
