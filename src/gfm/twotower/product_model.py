"""A trained two-tower model of one product, ready to score, and its files.

A saved model is a folder (local or ``gs://``) holding

* ``config.json``: product, item types, settings, the user tower's
  constructor arguments and the user encoder (feature vocabularies);
* ``user_tower.pt``: the user tower's state dict;
* ``item_vectors.npy``: float32 ``[num_items, dim]`` item tower outputs;
* ``items.parquet``: ``item_id``, ``item_type`` and training ``popularity``
  of each row of ``item_vectors.npy``;
* ``metrics.json``: the training curve and best validation recall;
* ``history/``: the ``ItemEmbeddings`` the user's history means are taken
  over. A serving bundle leaves it out and shares its ``hgnn/`` or ``llm/``.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import torch

from gfm import storage
from gfm.embeddings import ItemEmbeddings
from gfm.twotower.config import TwoTowerConfig
from gfm.twotower.features import UserEncoder
from gfm.twotower.model import UserTower

logger = logging.getLogger(__name__)

MODEL_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
USER_TOWER_FILE = "user_tower.pt"
ITEM_VECTORS_FILE = "item_vectors.npy"
ITEMS_FILE = "items.parquet"
METRICS_FILE = "metrics.json"
HISTORY_DIR = "history"

# Users encoded per user tower call in user_vectors.
USER_BATCH_SIZE = 4096

# Exceptions that torch.load (torch 2.x, weights_only=True) raises on a
# truncated or corrupt file: a cut zip archive, an empty file, stray bytes or text.
TORCH_READ_ERRORS = (RuntimeError, EOFError, KeyError, ValueError, struct.error,
                     pickle.UnpicklingError)


class ProductModel:
    """One product's trained user tower and precomputed item vectors.

    Args:
        product: the product name.
        item_types: the item types the product recommends.
        item_ids: ``[num_items]`` the product's items, in row order.
        item_types_of_rows: ``[num_items]`` the type of each item.
        item_vectors: float32 ``[num_items, dim]`` L2-normalized item vectors.
        popularity: int64 ``[num_items]`` training interactions per item.
        user_tower: the trained user tower.
        encoder: encodes raw histories and user features for ``user_tower``.
        config: the settings the model was trained with.
        metrics: training curve, best validation recall and counts.
    """

    def __init__(
        self,
        product: str,
        item_types: Sequence[str],
        item_ids: Sequence[str],
        item_types_of_rows: Sequence[str],
        item_vectors: np.ndarray,
        popularity: np.ndarray,
        user_tower: UserTower,
        encoder: UserEncoder,
        config: TwoTowerConfig,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        self.product = product
        self.item_types = list(item_types)
        self.item_ids = list(item_ids)
        self.item_types_of_rows = list(item_types_of_rows)
        self._item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.popularity = np.asarray(popularity, dtype=np.int64)
        self.user_tower = user_tower.eval()
        self.encoder = encoder
        self.config = config
        self.metrics = dict(metrics or {})
        self.item_index = {item_id: row for row, item_id in enumerate(self.item_ids)}
        rows = len(self.item_ids)
        if self._item_vectors.shape != (rows, config.output_dim):
            raise ValueError(
                f"item vectors of product {product!r} have shape "
                f"{self._item_vectors.shape}, expected ({rows}, {config.output_dim})"
            )
        if len(self.popularity) != rows or len(self.item_types_of_rows) != rows:
            raise ValueError(
                f"product {product!r}: {rows} item ids but {len(self.popularity)} "
                f"popularity counts and {len(self.item_types_of_rows)} item types"
            )

    @property
    def dim(self) -> int:
        """Dimension of the user and item vectors."""
        return self.config.output_dim

    def item_vectors(self) -> np.ndarray:
        """Return the item tower outputs, float32 ``[num_items, dim]``, unit-norm rows."""
        return self._item_vectors

    def user_vectors(
        self,
        histories: Sequence[Sequence[str]],
        user_features: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> np.ndarray:
        """Compute user vectors from raw histories and optional user features.

        Args:
            histories: ``[B]`` lists of consumed item ids of any item type;
                ids without a history embedding are ignored.
            user_features: ``[B]`` dicts of user feature values (``None``
                for a user without features), or ``None`` for no features.

        Returns:
            float32 ``[B, dim]`` L2-normalized user vectors. A user with an
            empty history and no features still gets a vector (the tower's
            output for all-missing inputs).

        Raises:
            ValueError: if ``user_features`` and ``histories`` differ in length.
        """
        out = np.zeros((len(histories), self.dim), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(histories), USER_BATCH_SIZE):
                stop = start + USER_BATCH_SIZE
                features = None if user_features is None else user_features[start:stop]
                inputs = self.encoder.encode(histories[start:stop], features)
                out[start:start + len(inputs.history_mask)] = self.user_tower(inputs).numpy()
        return out

    def scores(
        self,
        histories: Sequence[Sequence[str]],
        user_features: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> np.ndarray:
        """Return float32 ``[B, num_items]`` scores, ``<user, item> / temperature``."""
        users = self.user_vectors(histories, user_features)
        return users @ self._item_vectors.T / self.config.temperature

    def save(self, uri: str | os.PathLike, *, include_history: bool = True) -> None:
        """Write the model folder described in this module's docstring.

        Args:
            uri: the folder, local or ``gs://``.
            include_history: also write the history embeddings under
                ``history/``; a serving bundle stores them once for all
                products and passes ``False``.
        """
        config = {
            "format_version": MODEL_FORMAT_VERSION,
            "product": self.product,
            "item_types": self.item_types,
            "settings": self.config.to_dict(),
            "user_tower": self.user_tower.init_args,
            "encoder": self.encoder.spec(),
            "num_items": len(self.item_ids),
            "dim": self.dim,
        }
        storage.write_json(storage.join(uri, CONFIG_FILE), config)
        storage.write_torch(storage.join(uri, USER_TOWER_FILE), self.user_tower.state_dict())
        storage.write_array(storage.join(uri, ITEM_VECTORS_FILE), self._item_vectors)
        table = pa.table({
            "item_id": pa.array(self.item_ids, pa.string()),
            "item_type": pa.array(self.item_types_of_rows, pa.string()),
            "popularity": pa.array(self.popularity, pa.int64()),
        })
        storage.write_table(table, storage.join(uri, ITEMS_FILE))
        storage.write_json(storage.join(uri, METRICS_FILE), self.metrics)
        if include_history:
            self.encoder.history.save(storage.join(uri, HISTORY_DIR))
        logger.info("saved product model %r (%d items, dim %d) to %s",
                    self.product, len(self.item_ids), self.dim, uri)

    @classmethod
    def load(
        cls, uri: str | os.PathLike, history: ItemEmbeddings | None = None
    ) -> "ProductModel":
        """Read a model folder written by :meth:`save`.

        Args:
            uri: the folder, local or ``gs://``.
            history: the history embeddings, when the folder has no
                ``history/`` (as in a serving bundle).

        Raises:
            FileNotFoundError: if a file of the folder is missing.
            ValueError: if the files disagree with each other or with
                ``history``, or the format version is not supported.
        """
        config = storage.read_json(storage.join(uri, CONFIG_FILE))
        version = config.get("format_version")
        if version != MODEL_FORMAT_VERSION:
            raise ValueError(
                f"product model at {uri} has format_version {version!r}; this code "
                f"reads version {MODEL_FORMAT_VERSION}, so retrain or export it again"
            )
        if history is None:
            history_uri = storage.join(uri, HISTORY_DIR)
            if not storage.exists(history_uri):
                raise FileNotFoundError(
                    f"product model at {uri} has no {HISTORY_DIR}/ embeddings; pass "
                    f"the {config['encoder']['history_source']} embeddings as history="
                )
            history = ItemEmbeddings.load(history_uri)
        encoder = UserEncoder.from_spec(config["encoder"], history)

        settings = TwoTowerConfig.from_dict(config["settings"])
        tower_dims = list(config["user_tower"]["tower_dims"])
        if tower_dims[-1] != settings.output_dim:
            raise ValueError(
                f"product model at {uri}: the user tower outputs dim {tower_dims[-1]} "
                f"but the settings give dim {settings.output_dim}"
            )
        user_tower = UserTower(**config["user_tower"])
        state = _read_state_dict(storage.join(uri, USER_TOWER_FILE))
        try:
            user_tower.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(
                f"product model at {uri}: {USER_TOWER_FILE} does not match the user "
                f"tower in {CONFIG_FILE}: {error}"
            ) from error
        table = storage.read_table(storage.join(uri, ITEMS_FILE))
        return cls(
            product=config["product"],
            item_types=config["item_types"],
            item_ids=table.column("item_id").to_pylist(),
            item_types_of_rows=table.column("item_type").to_pylist(),
            item_vectors=storage.read_array(storage.join(uri, ITEM_VECTORS_FILE)),
            popularity=table.column("popularity").to_numpy(),
            user_tower=user_tower,
            encoder=encoder,
            config=settings,
            metrics=storage.read_json(storage.join(uri, METRICS_FILE)),
        )


def _read_state_dict(uri: str) -> Mapping[str, Any]:
    try:
        state = storage.read_torch(uri)
    except TORCH_READ_ERRORS as error:
        # torch's messages can run over many lines; the first one names the fault.
        detail = (str(error).strip().splitlines() or [""])[0]
        kind = type(error).__qualname__
        if type(error).__module__ != "builtins":
            kind = f"{type(error).__module__}.{kind}"
        raise ValueError(
            f"{uri} is not a readable torch state dict, so it may be truncated or "
            f"corrupt ({kind}: {detail}); save the model again"
        ) from error
    if not isinstance(state, Mapping):
        raise ValueError(f"{uri} contains a {type(state).__name__}, not a state dict; "
                         "save the model again")
    return state
