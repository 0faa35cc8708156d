"""The item-embedding artifact shared by featurization, the HGNN and serving.

On storage an :class:`ItemEmbeddings` is a folder (local or ``gs://``) with

* ``embeddings.npy``: float32 ``[num_items, dim]``, one row per item;
* ``items.parquet``: ``item_id`` and ``item_type`` of each row, in row order;
* ``metadata.json``: who made it and how (model, dimension, counts, ...).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from gfm import storage

EMBEDDINGS_FILE = "embeddings.npy"
ITEMS_FILE = "items.parquet"
METADATA_FILE = "metadata.json"


@dataclass
class ItemEmbeddings:
    """Row-aligned item ids, item types and an embedding matrix.

    Args:
        item_ids: ``[num_items]`` unique item ids.
        item_types: ``[num_items]`` the type of each item.
        matrix: ``[num_items, dim]`` float32 embeddings.
        metadata: free-form provenance, written as JSON.
    """

    item_ids: list[str]
    item_types: list[str]
    matrix: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float32)
        if self.matrix.ndim != 2:
            raise ValueError(
                f"embedding matrix must be 2-D [num_items, dim], got shape "
                f"{self.matrix.shape}"
            )
        if not (len(self.item_ids) == len(self.item_types) == self.matrix.shape[0]):
            raise ValueError(
                f"misaligned embeddings: {len(self.item_ids)} item ids, "
                f"{len(self.item_types)} item types, {self.matrix.shape[0]} rows"
            )
        if len(set(self.item_ids)) != len(self.item_ids):
            counts = Counter(self.item_ids)
            duplicates = [item_id for item_id, count in counts.items() if count > 1]
            raise ValueError(
                f"embedding item ids are not unique: {len(duplicates)} ids occur more "
                f"than once, first {duplicates[:5]}; deduplicate the items"
            )

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.item_ids)

    def index(self) -> dict[str, int]:
        """Return the map from item id to row."""
        return {item_id: row for row, item_id in enumerate(self.item_ids)}

    def select(self, item_ids: list[str]) -> np.ndarray:
        """Return the rows of ``item_ids``, ``[len(item_ids), dim]``.

        Raises:
            KeyError: naming the first id that has no row.
        """
        index = self.index()
        missing = [i for i in item_ids if i not in index]
        if missing:
            raise KeyError(
                f"{len(missing)} item ids have no embedding, first {missing[0]!r}"
            )
        return self.matrix[[index[i] for i in item_ids]]

    def save(self, uri: str | os.PathLike) -> None:
        """Write the three files below the folder ``uri``."""
        storage.write_array(storage.join(uri, EMBEDDINGS_FILE), self.matrix)
        table = pa.table(
            {
                "item_id": pa.array(self.item_ids, pa.string()),
                "item_type": pa.array(self.item_types, pa.string()),
            }
        )
        storage.write_table(table, storage.join(uri, ITEMS_FILE))
        metadata = dict(self.metadata, num_items=len(self), dim=self.dim)
        storage.write_json(storage.join(uri, METADATA_FILE), metadata)

    @classmethod
    def load(cls, uri: str | os.PathLike) -> "ItemEmbeddings":
        """Read an artifact written by :meth:`save`."""
        matrix = storage.read_array(storage.join(uri, EMBEDDINGS_FILE))
        table = storage.read_table(storage.join(uri, ITEMS_FILE))
        metadata = storage.read_json(storage.join(uri, METADATA_FILE))
        return cls(
            item_ids=table.column("item_id").to_pylist(),
            item_types=table.column("item_type").to_pylist(),
            matrix=matrix,
            metadata=metadata,
        )
