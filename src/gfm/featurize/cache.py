"""Incremental embedding cache, so a rerun embeds only new or changed items.

An entry's key hashes the model fingerprint, the item type's template, the
template version, ``max_length`` and the rendered text: changing any of them
misses the cache. The engine is not part of the key, because vLLM and
sentence-transformers give the same vectors for the same model folder (the
tests require cosine >= 0.999 per item).

Layout below ``cache_uri`` (local or ``gs://``, through ``gfm.storage``)::

    <fingerprint[:16]>/part-<time_ns>-<random>.parquet

Each run that embeds something adds one Parquet shard with columns ``key``
(string) and ``embedding`` (fixed-size list of float32, ``[dim]``). Shards
are written whole in one atomic write, so concurrent runs never see a
partial shard. Once a model folder contains more than :data:`MAX_SHARDS`
shards, a run merges the ones it read into one and deletes them.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from typing import Sequence

import numpy as np
import pyarrow as pa

from gfm import storage
from gfm.featurize.models import ResolvedModel

logger = logging.getLogger(__name__)

MAX_SHARDS = 8

_SHARD_PREFIX = "part-"
_SHARD_SUFFIX = ".parquet"


def cache_key(model: ResolvedModel, template: str, template_version: str, text: str) -> str:
    """Return the cache key of one rendered text, a 64-digit hex SHA-256."""
    digest = hashlib.sha256()
    for part in (model.fingerprint, str(model.max_length), template_version, template, text):
        encoded = part.encode("utf-8")
        # Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


class EmbeddingCache:
    """Embeddings of one model stored below ``uri``.

    Args:
        uri: the cache folder, local or ``gs://``.
        model: the model whose entries are read and written.
    """

    def __init__(self, uri: str, model: ResolvedModel) -> None:
        self.uri = storage.join(uri, model.fingerprint[:16])
        self._shards: list[str] = []
        self._index: dict[str, int] = {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)

    def load(self) -> int:
        """Read every shard; return the number of distinct cached keys."""
        started = time.monotonic()
        shards = [
            uri for uri in storage.list_files(self.uri)
            if uri.rsplit("/", 1)[-1].startswith(_SHARD_PREFIX) and uri.endswith(_SHARD_SUFFIX)
        ]
        keys: list[str] = []
        matrices = []
        for uri in shards:
            shard_keys, matrix = _read_shard(uri)
            if matrices and matrix.shape[1] != matrices[0].shape[1]:
                raise ValueError(
                    f"cache shard {uri} has dim {matrix.shape[1]}, others "
                    f"{matrices[0].shape[1]}; delete the folder {self.uri} to reset "
                    "the cache"
                )
            keys.extend(shard_keys)
            matrices.append(matrix)
        self._shards = shards
        # Later shards win for a repeated key; their vectors are equal anyway.
        self._index = {key: row for row, key in enumerate(keys)}
        self._matrix = np.concatenate(matrices) if matrices else self._matrix
        logger.info("embedding cache %s: %d keys in %d shards, read in %.1f s",
                    self.uri, len(self._index), len(shards), time.monotonic() - started)
        return len(self._index)

    def lookup(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Find cached embeddings.

        Args:
            keys: ``[n]`` cache keys.

        Returns:
            ``found`` (bool ``[n]``) and the embeddings of the found keys,
            float32 ``[found.sum(), dim]``, in the order of ``keys``.
        """
        rows = [self._index.get(key, -1) for key in keys]
        found = np.array([row >= 0 for row in rows], dtype=bool)
        hit_rows = [row for row in rows if row >= 0]
        return found, self._matrix[hit_rows] if hit_rows else np.zeros(
            (0, self._matrix.shape[1]), dtype=np.float32)

    def add(self, keys: Sequence[str], matrix: np.ndarray) -> str | None:
        """Write new entries as one shard, then merge shards if there are many.

        Args:
            keys: ``[n]`` cache keys.
            matrix: float32 ``[n, dim]`` their embeddings.

        Returns:
            The written shard's URI, or None when there was nothing to write.
        """
        if len(keys) != len(matrix):
            raise ValueError(f"{len(keys)} cache keys for {len(matrix)} embeddings")
        if not keys:
            return None
        shard = self._write_shard(list(keys), np.asarray(matrix, dtype=np.float32))
        logger.info("embedding cache: wrote %d entries to %s", len(keys), shard)
        if len(self._shards) + 1 > MAX_SHARDS:
            self._compact(list(keys), matrix, shard)
        return shard

    def _write_shard(self, keys: list[str], matrix: np.ndarray) -> str:
        name = f"{_SHARD_PREFIX}{time.time_ns()}-{uuid.uuid4().hex[:8]}{_SHARD_SUFFIX}"
        uri = storage.join(self.uri, name)
        dim = matrix.shape[1]
        values = pa.array(matrix.reshape(-1), type=pa.float32())
        table = pa.table({
            "key": pa.array(keys, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(values, dim),
        })
        storage.write_table(table, uri)
        return uri

    def _compact(self, keys: list[str], matrix: np.ndarray, new_shard: str) -> None:
        merged = dict(self._index)
        offset = len(self._matrix)
        for row, key in enumerate(keys):
            merged[key] = offset + row
        all_rows = np.concatenate([self._matrix, matrix]) if offset else matrix
        merged_keys = list(merged)
        merged_shard = self._write_shard(merged_keys, all_rows[list(merged.values())])
        # Only shards this run read or wrote are deleted; a shard another run
        # added meanwhile stays.
        for uri in [*self._shards, new_shard]:
            storage.delete(uri)
        logger.info("embedding cache: merged %d shards into %s (%d keys)",
                    len(self._shards) + 1, merged_shard, len(merged_keys))
        self._shards = [merged_shard]


def _read_shard(uri: str) -> tuple[list[str], np.ndarray]:
    table = storage.read_table(uri)
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    return table.column("key").to_pylist(), matrix.astype(np.float32, copy=False)
