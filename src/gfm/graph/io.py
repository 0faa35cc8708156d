"""Save and load a built graph: ``graph.pt`` and ``stats.json`` in one folder."""

from __future__ import annotations

import logging
import os

from torch_geometric.data import HeteroData

from gfm import storage
from gfm.graph.build import GraphResult

logger = logging.getLogger(__name__)

GRAPH_FILE = "graph.pt"
STATS_FILE = "stats.json"


def save_graph(result: GraphResult, uri: str | os.PathLike) -> None:
    """Write ``graph.pt`` and ``stats.json`` below the folder ``uri``.

    Args:
        result: the output of :func:`gfm.graph.build_graph`.
        uri: a local folder or ``gs://`` prefix; created when missing.
    """
    storage.write_torch(storage.join(uri, GRAPH_FILE), result.data)
    storage.write_json(storage.join(uri, STATS_FILE), result.stats)
    logger.info("saved the graph to %s", uri)


def load_graph(uri: str | os.PathLike) -> GraphResult:
    """Read a graph folder written by :func:`save_graph`.

    ``graph.pt`` is unpickled with ``weights_only=False``, as a
    ``HeteroData`` requires, so load only graphs of a trusted pipeline.

    Raises:
        FileNotFoundError: if either file is missing.
        ValueError: if ``graph.pt`` contains something other than a ``HeteroData``.
    """
    data = storage.read_torch(storage.join(uri, GRAPH_FILE), weights_only=False)
    if not isinstance(data, HeteroData):
        raise ValueError(
            f"invalid graph file {storage.join(uri, GRAPH_FILE)}: it contains a "
            f"{type(data).__name__}, not a HeteroData; pass the output folder of "
            "the graph stage"
        )
    stats = storage.read_json(storage.join(uri, STATS_FILE))
    return GraphResult(data=data, stats=stats)
