"""Heterogeneous GraphSAGE over the item co-interaction graph.

Each layer computes, for a node ``v`` of type ``t``,

.. math::
    h_v' = W_t h_v + b_t + \\sum_{r = (s, t)} W_r \\max_{u \\in N_r(v)} h_u

with a separate weight ``W_r`` per relation, an element-wise max over the
relation's neighbours, and messages summed across relations: a
``HeteroConv(aggr="sum")`` of ``SAGEConv(aggr="max")``. With
``project=True`` each neighbour first passes through
``relu(P_r h_u + p_r)``, GraphSAGE's pooling aggregator.

The root term ``W_t h_v + b_t`` is one ``Linear`` per node type, applied to
every node whatever edges it has. The relation convs have neither a root
weight (``root_weight=False``) nor a bias (``bias=False``). PyG's max over
no neighbours is 0, so a relation adds nothing to a node without
neighbours in it. PyG's default would put a
root weight and a bias in each relation's ``SAGEConv``. The root weights
would sum to one linear map, so the model family is the same. The biases,
though, would add ``b_r`` once for every edge type present in the input
graph. A node with no edges, or one added after training, therefore gets
``W_t h_v + b_t`` from its own features at every layer, in a graph with or
without edge types.

Inputs are the LLM features projected to ``hidden_dim``; outputs are
L2-normalized, so dot products are cosine scores.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import HeteroConv, SAGEConv
from torch_geometric.nn.module_dict import ModuleDict
from torch_geometric.typing import EdgeType, NodeType


class HeteroGraphSAGE(nn.Module):
    """Heterogeneous GraphSAGE with max-pool aggregation per relation.

    Args:
        node_types: item types, one node type each.
        edge_types: relations ``(src_type, "co", dst_type)`` the layers pass
            messages along.
        in_dims: input feature dimension of each node type.
        hidden_dim: width of the projected inputs and the hidden layers.
        out_dim: dimension of the output embeddings.
        num_layers: number of message-passing layers.
        project: apply ``Linear`` and ReLU to each neighbour before the max.
        dropout: dropout probability after each hidden layer.

    Shapes:
        - input: ``x_dict[t]`` ``[num_nodes_t, in_dims[t]]``,
          ``edge_index_dict[r]`` ``[2, num_edges_r]``.
        - output: ``[num_nodes_t, out_dim]`` per node type, unit L2 norm.
    """

    def __init__(
        self,
        node_types: list[NodeType],
        edge_types: list[EdgeType],
        in_dims: Mapping[NodeType, int],
        hidden_dim: int = 128,
        out_dim: int = 128,
        num_layers: int = 2,
        project: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        missing = [t for t in node_types if t not in in_dims]
        if missing:
            raise ValueError(f"no input dimension for node types {missing}")
        for src, _, dst in edge_types:
            if src not in node_types or dst not in node_types:
                raise ValueError(
                    f"edge type {(src, _, dst)} names a node type outside {node_types}"
                )

        self.node_types = list(node_types)
        self.edge_types = [tuple(e) for e in edge_types]
        self.in_dims = {t: int(in_dims[t]) for t in node_types}
        self.hidden_dim = hidden_dim
        self.out_dim = out_dim
        self.num_layers = num_layers
        self.project = project
        self.dropout = dropout

        self.input = ModuleDict(
            {t: nn.Linear(self.in_dims[t], hidden_dim) for t in node_types}
        )
        self.convs = nn.ModuleList()
        self.roots = nn.ModuleList()
        for layer in range(num_layers):
            width = out_dim if layer == num_layers - 1 else hidden_dim
            self.convs.append(
                HeteroConv(
                    {
                        edge_type: SAGEConv(
                            hidden_dim,
                            width,
                            aggr="max",
                            root_weight=False,
                            project=project,
                            bias=False,
                        )
                        for edge_type in self.edge_types
                    },
                    aggr="sum",
                )
            )
            self.roots.append(
                ModuleDict({t: nn.Linear(hidden_dim, width) for t in node_types})
            )

    def hparams(self) -> dict:
        """Return the constructor arguments, to rebuild the module."""
        return {
            "node_types": self.node_types,
            "edge_types": [list(e) for e in self.edge_types],
            "in_dims": self.in_dims,
            "hidden_dim": self.hidden_dim,
            "out_dim": self.out_dim,
            "num_layers": self.num_layers,
            "project": self.project,
            "dropout": self.dropout,
        }

    @classmethod
    def from_hparams(cls, hparams: Mapping) -> HeteroGraphSAGE:
        """Rebuild a module from :meth:`hparams`."""
        values = dict(hparams)
        values["edge_types"] = [tuple(e) for e in values["edge_types"]]
        return cls(**values)

    def encode_inputs(
        self, x_dict: Mapping[NodeType, Tensor]
    ) -> dict[NodeType, Tensor]:
        """Project each node type's features to ``[num_nodes_t, hidden_dim]``."""
        return {t: self.input[t](x) for t, x in x_dict.items()}

    def activate(self, index: int, h: dict[NodeType, Tensor]) -> dict[NodeType, Tensor]:
        """Apply ReLU and dropout after every layer but the last."""
        if index == self.num_layers - 1:
            return h
        return {
            t: F.dropout(F.relu(value), p=self.dropout, training=self.training)
            for t, value in h.items()
        }

    def forward(
        self,
        x_dict: Mapping[NodeType, Tensor],
        edge_index_dict: Mapping[EdgeType, Tensor],
    ) -> dict[NodeType, Tensor]:
        """Embed every node of a (sampled) graph; see the class docstring."""
        h = self.encode_inputs(x_dict)
        for index in range(self.num_layers):
            messages = self.convs[index](h, edge_index_dict)
            outputs = {}
            for node_type, value in h.items():
                outputs[node_type] = self.roots[index][node_type](value)
                if node_type in messages:
                    outputs[node_type] = outputs[node_type] + messages[node_type]
            h = self.activate(index, outputs)
        return normalize(h)


# State-dict key of the per-relation bias that earlier versions had in each
# relation's SAGEConv, for example "convs.0.convs.<artist___co___tag>.lin_l.bias".
_RELATION_BIAS_KEY = re.compile(r"^convs\.(\d+)\.convs\.<(.+)>\.lin_l\.bias$")


def upgrade_state_dict(weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Fold per-relation biases of an older ``state_dict`` into the root biases.

    Earlier versions added each relation's bias ``b_r`` to every node of its
    destination type ``t``, because training batches and inference over the
    training graph contain every edge type. Adding the sum of those ``b_r``
    to the root bias ``b_t`` gives the same outputs on such graphs.

    Returns:
        A new dict without ``lin_l.bias`` keys; ``weights`` without them
        comes back as a copy.
    """
    upgraded = dict(weights)
    for key in [k for k in upgraded if _RELATION_BIAS_KEY.match(k)]:
        layer, edge_key = _RELATION_BIAS_KEY.match(key).groups()
        dst_type = edge_key.split("___")[-1].replace("#", ".")
        root_key = f"roots.{layer}.{ModuleDict.to_internal_key(dst_type)}.bias"
        bias = upgraded.pop(key)
        if root_key in upgraded:
            upgraded[root_key] = upgraded[root_key] + bias
    return upgraded


def normalize(h: Mapping[NodeType, Tensor]) -> dict[NodeType, Tensor]:
    """L2-normalize each node type's rows."""
    return {t: F.normalize(value, p=2.0, dim=-1) for t, value in h.items()}


def count_parameters(module: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def build_model(
    node_types: list[NodeType],
    edge_types: list[EdgeType],
    in_dims: Mapping[NodeType, int],
    config,
) -> HeteroGraphSAGE:
    """Build the network an :class:`~gfm.hgnn.config.HGNNConfig` describes."""
    torch.manual_seed(config.seed)
    return HeteroGraphSAGE(
        node_types=node_types,
        edge_types=edge_types,
        in_dims=in_dims,
        hidden_dim=config.hidden_dim,
        out_dim=config.out_dim,
        num_layers=config.num_layers,
        project=config.project,
        dropout=config.dropout,
    )
