"""Encoding of raw item fields, user features and histories into tensors.

Categorical values map to indices with two reserved rows: ``0`` is missing
(also the padding of token bags) and ``1`` is out-of-vocabulary (a value
seen fewer than ``min_count`` times, or never seen in training).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from gfm.embeddings import ItemEmbeddings

logger = logging.getLogger(__name__)

MISSING_INDEX = 0
OOV_INDEX = 1

# Item fields with more tokens than this keep their first tokens only.
MAX_TOKENS_PER_FIELD = 32


def is_missing(value: Any) -> bool:
    """Return whether a table cell is empty (None, NaN or NaT)."""
    if value is None:
        return True
    if isinstance(value, (list, tuple, np.ndarray)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


class CategoricalVocab:
    """Map from the string form of a categorical value to an embedding row.

    Args:
        values: the kept values; value ``values[k]`` has index ``k + 2``.
    """

    def __init__(self, values: Sequence[str]) -> None:
        self.values = list(values)
        self._index = {value: row + 2 for row, value in enumerate(self.values)}

    @classmethod
    def fit(cls, tokens: Iterable[str], min_count: int) -> "CategoricalVocab":
        """Keep the tokens seen at least ``min_count`` times, most frequent first."""
        counts = Counter(tokens)
        kept = [t for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                if n >= min_count]
        return cls(kept)

    @property
    def size(self) -> int:
        """Number of embedding rows, the two reserved rows included."""
        return len(self.values) + 2

    def lookup(self, value: Any) -> int:
        """Return the index of one raw value."""
        if is_missing(value):
            return MISSING_INDEX
        return self._index.get(str(value), OOV_INDEX)


def item_field_tokens(field: str, value: Any) -> list[str]:
    """Turn one item cell into categorical tokens.

    List cells (``genres``, ``tags``, ``creators``) give one token per
    element, ``release_year`` gives its decade (``"1990s"``), any other cell
    gives its string form, and a missing cell gives no token.
    """
    if is_missing(value):
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value if not is_missing(v)]
    if field == "release_year":
        return [f"{int(value) // 10 * 10}s"]
    return [str(value)]


def encode_item_field(
    field: str, column: Sequence[Any], min_count: int
) -> tuple[CategoricalVocab, torch.Tensor, int]:
    """Build the vocabulary and padded token matrix of one item field.

    Args:
        field: the column name, which decides how cells become tokens.
        column: ``[num_items]`` cells of that column, in item row order.
        min_count: rarer tokens map to the out-of-vocabulary index.

    Returns:
        The vocabulary, an int64 ``[num_items, max_tokens]`` matrix padded
        with ``MISSING_INDEX``, and the number of tokens cut by
        ``MAX_TOKENS_PER_FIELD``.
    """
    per_item = [item_field_tokens(field, value) for value in column]
    vocab = CategoricalVocab.fit((t for tokens in per_item for t in tokens), min_count)
    width = max(1, min(MAX_TOKENS_PER_FIELD, max((len(t) for t in per_item), default=0)))
    matrix = np.full((len(per_item), width), MISSING_INDEX, dtype=np.int64)
    truncated = 0
    for row, tokens in enumerate(per_item):
        truncated += max(0, len(tokens) - width)
        for col, token in enumerate(tokens[:width]):
            matrix[row, col] = vocab.lookup(token)
    return vocab, torch.from_numpy(matrix), truncated


@dataclass
class UserInputs:
    """A batch of user tower inputs.

    Args:
        history_mean: float32 ``[B, num_history_types, history_dim]``, the
            mean history embedding per item type (zeros where none).
        history_mask: float32 ``[B, num_history_types]``, 1 where the user
            has history of that type.
        categorical: int64 ``[B, num_categorical]`` user feature indices.
        numeric: float32 ``[B, num_numeric]`` standardized user features.
    """

    history_mean: torch.Tensor
    history_mask: torch.Tensor
    categorical: torch.Tensor
    numeric: torch.Tensor


class UserEncoder:
    """Encoder of raw histories (item ids) and user feature dicts into tensors.

    Args:
        history: embeddings of every catalog item the history means are
            taken over (the HGNN's, or the LLM's when HGNN inputs are off).
        source: ``"hgnn"`` or ``"llm"``, recorded for loading.
        categorical: ``(column, vocabulary)`` of each categorical user feature.
        numeric: ``(column, mean, std)`` of each numeric user feature.
    """

    def __init__(
        self,
        history: ItemEmbeddings,
        source: str,
        categorical: Sequence[tuple[str, CategoricalVocab]] = (),
        numeric: Sequence[tuple[str, float, float]] = (),
    ) -> None:
        self.history = history
        self.source = source
        self.history_types = sorted(set(history.item_types))
        type_position = {t: k for k, t in enumerate(self.history_types)}
        self.row_type = np.array([type_position[t] for t in history.item_types],
                                 dtype=np.int64)
        self.row_of = history.index()
        self.matrix = torch.from_numpy(history.matrix)
        self.categorical = list(categorical)
        self.numeric = list(numeric)

    @classmethod
    def fit(
        cls,
        history: ItemEmbeddings,
        source: str,
        users: pd.DataFrame | None,
        fields: Sequence[str] | None,
        min_count: int,
    ) -> "UserEncoder":
        """Build the encoder, learning feature vocabularies from ``users``.

        Integer, boolean and string columns are categorical; float columns
        are numeric and standardized with the table's mean and standard
        deviation.

        Raises:
            ValueError: if a requested feature column is not in ``users``.
        """
        categorical: list[tuple[str, CategoricalVocab]] = []
        numeric: list[tuple[str, float, float]] = []
        if users is not None:
            columns = [c for c in users.columns if c != "user_id"]
            if fields is not None:
                missing = [f for f in fields if f not in users.columns]
                if missing:
                    raise ValueError(
                        f"user_fields {missing} are not columns of the users table "
                        f"(columns: {columns}); fix user_fields or set it to null"
                    )
                columns = list(fields)
            for column in columns:
                values = users[column]
                if pd.api.types.is_float_dtype(values):
                    mean = float(values.mean()) if values.notna().any() else 0.0
                    std = float(values.std()) if values.notna().sum() > 1 else 1.0
                    numeric.append((column, mean, std if std > 0 else 1.0))
                else:
                    tokens = (str(v) for v in values if not is_missing(v))
                    categorical.append((column, CategoricalVocab.fit(tokens, min_count)))
        return cls(history, source, categorical, numeric)

    @property
    def history_dim(self) -> int:
        return self.history.dim

    def history_rows(self, history: Iterable[str]) -> tuple[np.ndarray, int]:
        """Return the unique embedding rows of a history and how many ids had none."""
        rows, unknown = [], 0
        for item_id in history:
            row = self.row_of.get(item_id)
            if row is None:
                unknown += 1
            else:
                rows.append(row)
        return np.unique(np.asarray(rows, dtype=np.int64)), unknown

    def feature_indices(
        self, features: Sequence[Mapping[str, Any] | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode user feature dicts: ``[B, num_categorical]`` and ``[B, num_numeric]``."""
        categorical = np.zeros((len(features), len(self.categorical)), dtype=np.int64)
        numeric = np.zeros((len(features), len(self.numeric)), dtype=np.float32)
        for row, values in enumerate(features):
            if not values:
                continue
            for col, (name, vocab) in enumerate(self.categorical):
                categorical[row, col] = vocab.lookup(values.get(name))
            for col, (name, mean, std) in enumerate(self.numeric):
                value = values.get(name)
                if not is_missing(value):
                    numeric[row, col] = (float(value) - mean) / std
        return torch.from_numpy(categorical), torch.from_numpy(numeric)

    def encode(
        self,
        histories: Sequence[Sequence[str]],
        features: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> UserInputs:
        """Encode raw histories and optional user features for the user tower.

        Args:
            histories: ``[B]`` lists of consumed item ids of any type; ids
                without an embedding are ignored.
            features: ``[B]`` user feature dicts (``None`` for unknown users),
                or ``None`` for no features at all.

        Raises:
            ValueError: if ``features`` and ``histories`` differ in length.
        """
        if features is not None and len(features) != len(histories):
            raise ValueError(
                f"got {len(histories)} histories but {len(features)} user feature "
                f"entries; pass one entry (or None) per history"
            )
        num_types, dim = len(self.history_types), self.history_dim
        sums = torch.zeros((len(histories), num_types, dim))
        counts = torch.zeros((len(histories), num_types))
        unknown_total = 0
        for user, history in enumerate(histories):
            rows, unknown = self.history_rows(history)
            unknown_total += unknown
            if len(rows) == 0:
                continue
            types = torch.from_numpy(self.row_type[rows])
            sums[user].index_add_(0, types, self.matrix[torch.from_numpy(rows)])
            counts[user].index_add_(0, types, torch.ones(len(rows)))
        if unknown_total:
            logger.debug("ignored %d history item ids without an embedding", unknown_total)
        categorical, numeric = self.feature_indices(
            features if features is not None else [None] * len(histories)
        )
        return UserInputs(
            history_mean=sums / counts.clamp(min=1.0).unsqueeze(-1),
            history_mask=(counts > 0).float(),
            categorical=categorical,
            numeric=numeric,
        )

    def spec(self) -> dict[str, Any]:
        """Return a JSON-ready description, enough to rebuild the encoder."""
        return {
            "history_source": self.source,
            "history_types": self.history_types,
            "history_dim": self.history_dim,
            "history_num_items": len(self.history),
            "categorical": [{"name": n, "values": v.values} for n, v in self.categorical],
            "numeric": [{"name": n, "mean": m, "std": s} for n, m, s in self.numeric],
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], history: ItemEmbeddings) -> "UserEncoder":
        """Rebuild an encoder from :meth:`spec` output and its history embeddings.

        Raises:
            ValueError: if ``history`` does not match the recorded dimension
                or item types.
        """
        if history.dim != spec["history_dim"]:
            raise ValueError(
                f"history embeddings have dim {history.dim}, but the user tower was "
                f"trained on dim {spec['history_dim']} ({spec['history_source']} "
                f"embeddings); load the embeddings the model was trained with"
            )
        types = sorted(set(history.item_types))
        if types != list(spec["history_types"]):
            raise ValueError(
                f"history embeddings cover item types {types}, but the user tower "
                f"expects {list(spec['history_types'])}"
            )
        categorical = [(c["name"], CategoricalVocab(c["values"])) for c in spec["categorical"]]
        numeric = [(c["name"], float(c["mean"]), float(c["std"])) for c in spec["numeric"]]
        return cls(history, spec["history_source"], categorical, numeric)

