"""Heterogeneous GraphSAGE over the item co-interaction graph, on Ray Train.

``train_hgnn`` trains on a graph folder and writes the model, the item
embeddings of every catalog item and the metrics. ``load_model`` and
``embed_items`` embed a (newer) graph with a trained model.
"""

from gfm.hgnn.artifacts import HGNNModel, embed_items, load_model, save_model
from gfm.hgnn.config import ClusterConfig, HGNNConfig
from gfm.hgnn.kuberay import RayJobFailedError
from gfm.hgnn.model import HeteroGraphSAGE
from gfm.hgnn.train import HGNNResult, read_result, train_hgnn

__all__ = [
    "ClusterConfig",
    "HGNNConfig",
    "HGNNModel",
    "HGNNResult",
    "HeteroGraphSAGE",
    "RayJobFailedError",
    "embed_items",
    "load_model",
    "read_result",
    "save_model",
    "train_hgnn",
]
