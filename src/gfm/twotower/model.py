"""The user and item towers: MLPs over concatenated inputs, unit-norm outputs.

A user and an item score ``<u, v> / temperature``, where ``u`` and ``v`` are
the L2-normalized tower outputs, so the score is a scaled cosine.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gfm.twotower.features import MISSING_INDEX, UserInputs


def mlp(in_dim: int, dims: Sequence[int], dropout: float) -> nn.Sequential:
    """Build ``Linear -> ReLU -> Dropout`` blocks, with a plain last ``Linear``."""
    layers: list[nn.Module] = []
    for position, width in enumerate(dims):
        layers.append(nn.Linear(in_dim, width))
        if position < len(dims) - 1:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        in_dim = width
    return nn.Sequential(*layers)


class UserTower(nn.Module):
    """Maps per-type history means, their mask and user features to a unit vector.

    Args:
        num_history_types: item types the history means are taken over.
        history_dim: dimension of one history embedding.
        categorical_sizes: vocabulary size of each categorical user feature.
        categorical_dim: embedding width of each categorical feature.
        num_numeric: number of numeric user features.
        tower_dims: MLP widths; the last is the output dimension.
        dropout: dropout probability after each hidden layer.

    Shapes:
        input: a :class:`UserInputs` of batch size ``B``.
        output: ``[B, tower_dims[-1]]``, L2-normalized rows.
    """

    def __init__(
        self,
        num_history_types: int,
        history_dim: int,
        categorical_sizes: Sequence[int],
        categorical_dim: int,
        num_numeric: int,
        tower_dims: Sequence[int],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.init_args: dict[str, Any] = {
            "num_history_types": num_history_types,
            "history_dim": history_dim,
            "categorical_sizes": list(categorical_sizes),
            "categorical_dim": categorical_dim,
            "num_numeric": num_numeric,
            "tower_dims": list(tower_dims),
            "dropout": dropout,
        }
        self.embeddings = nn.ModuleList(
            nn.Embedding(size, categorical_dim, padding_idx=MISSING_INDEX)
            for size in categorical_sizes
        )
        in_dim = (num_history_types * (history_dim + 1)
                  + len(categorical_sizes) * categorical_dim + num_numeric)
        self.mlp = mlp(in_dim, tower_dims, dropout)

    def forward(self, inputs: UserInputs) -> torch.Tensor:
        parts = [inputs.history_mean.flatten(1), inputs.history_mask, inputs.numeric]
        for column, embedding in enumerate(self.embeddings):
            parts.append(embedding(inputs.categorical[:, column]))
        return F.normalize(self.mlp(torch.cat(parts, dim=1)), dim=-1)


class ItemTower(nn.Module):
    """Maps an item's dense embeddings and categorical token bags to a unit vector.

    Args:
        dense_dim: width of the concatenated HGNN and LLM embeddings.
        field_sizes: vocabulary size of each categorical item field.
        categorical_dim: embedding width of each field (the mean over the
            field's tokens, padding excluded).
        tower_dims: MLP widths; the last is the output dimension.
        dropout: dropout probability after each hidden layer.

    Shapes:
        input: dense ``[B, dense_dim]`` and one int64 ``[B, max_tokens]``
            matrix per field.
        output: ``[B, tower_dims[-1]]``, L2-normalized rows.
    """

    def __init__(
        self,
        dense_dim: int,
        field_sizes: Sequence[int],
        categorical_dim: int,
        tower_dims: Sequence[int],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.bags = nn.ModuleList(
            nn.EmbeddingBag(size, categorical_dim, mode="mean", padding_idx=MISSING_INDEX)
            for size in field_sizes
        )
        self.mlp = mlp(dense_dim + len(field_sizes) * categorical_dim, tower_dims, dropout)

    def forward(self, dense: torch.Tensor, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        parts = [dense] + [bag(field) for bag, field in zip(self.bags, tokens)]
        return F.normalize(self.mlp(torch.cat(parts, dim=1)), dim=-1)


def in_batch_softmax_loss(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    item_rows: torch.Tensor,
    log_q: torch.Tensor | None,
    temperature: float,
) -> torch.Tensor:
    """Sampled softmax over in-batch negatives, with an optional logQ correction.

    Row ``b`` of the batch is a positive pair ``(user b, item b)``; every
    other item of the batch is a negative of user ``b``. In-batch items are
    drawn in proportion to their popularity, so without a correction popular
    items are pushed down too often. Subtracting ``log q(item)`` from each
    logit (the logQ correction) brings the sampled softmax closer to the
    full softmax over all items. Columns holding the positive's own item
    are masked, so a repeated item is never its own negative.

    Args:
        user_vectors: ``[B, dim]`` unit-norm user vectors.
        item_vectors: ``[B, dim]`` unit-norm item vectors.
        item_rows: int64 ``[B]`` item ids (rows) of the positives.
        log_q: float32 ``[B]`` log sampling probability of each positive,
            or ``None`` for no correction.
        temperature: divides the dot products.

    Returns:
        The mean cross-entropy, a scalar.
    """
    logits = user_vectors @ item_vectors.T / temperature
    if log_q is not None:
        logits = logits - log_q.unsqueeze(0)
    same_item = item_rows.unsqueeze(0) == item_rows.unsqueeze(1)
    same_item.fill_diagonal_(False)
    logits = logits.masked_fill(same_item, float("-inf"))
    targets = torch.arange(len(item_rows), device=logits.device)
    return F.cross_entropy(logits, targets)
