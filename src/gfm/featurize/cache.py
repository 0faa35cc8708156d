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

A damaged or vanished shard does not fail a run: a shard that vanishes
under a concurrent merge is skipped, and an unreadable or malformed shard
is skipped with a warning.
Cached rows are checked (finite, unit norm, one dimension), so a damaged
row is embedded again instead of reaching the output.
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

# Largest deviation from norm 1 a cached row may have. Float32 rows that
# ``gfm.featurize.engine.l2_normalize`` scaled pass the tests' 1e-5 check.
NORM_TOLERANCE = 1e-3

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

    After :meth:`load`, ``skipped_shards`` lists the shards that could not be
    used (unreadable, malformed, or of a minority dimension) and
    ``invalid_rows`` counts cached rows rejected by the row check.

    Args:
        uri: the cache folder, local or ``gs://``.
        model: the model whose entries are read and written.
    """

    def __init__(self, uri: str, model: ResolvedModel) -> None:
        self.uri = storage.join(uri, model.fingerprint[:16])
        self.skipped_shards: list[str] = []
        self.invalid_rows = 0
        self._shards: list[str] = []
        self._index: dict[str, int] = {}
        self._invalid_keys: set[str] = set()
        self._matrix = np.zeros((0, 0), dtype=np.float32)

    def load(self) -> int:
        """Read every shard; return the number of distinct cached keys.

        Shards that another run deletes while this one reads (a concurrent
        compaction) are skipped, and the folder is listed once more to pick
        up the merged shard that replaced them. Unreadable or malformed
        shards are skipped with a warning. Rows that are not finite, not of
        unit norm within :data:`NORM_TOLERANCE` or have a null key are left
        out of the index, so their items are embedded again.
        """
        started = time.monotonic()
        self.skipped_shards = []
        shards = self._read_shards()
        dim = _majority_dim(shards)
        keys: list[str] = []
        matrices = []
        invalid_keys: set[str] = set()
        self._shards, self.invalid_rows = [], 0
        for uri, (shard_keys, matrix) in shards.items():
            if matrix.shape[1] != dim:
                logger.warning(
                    "embedding cache: skipping shard %s: dim %d, but most cached rows "
                    "have dim %d; delete the shard", uri, matrix.shape[1], dim)
                self.skipped_shards.append(uri)
                continue
            valid = _valid_rows(shard_keys, matrix)
            if not valid.all():
                bad = np.flatnonzero(~valid)
                logger.warning(
                    "embedding cache: %d of %d rows of shard %s are not finite, not of "
                    "unit norm or have no key, first row %d; their items are embedded "
                    "again", bad.size, len(valid), uri, bad[0])
                invalid_keys.update(shard_keys[row] for row in bad if shard_keys[row])
                self.invalid_rows += int(bad.size)
            keys.extend(key for key, ok in zip(shard_keys, valid) if ok)
            matrices.append(matrix[valid])
            self._shards.append(uri)
        # Later shards win for a repeated key; their vectors are equal anyway.
        self._index = {key: row for row, key in enumerate(keys)}
        self._invalid_keys = invalid_keys - self._index.keys()
        self._matrix = (np.concatenate(matrices) if matrices
                        else np.zeros((0, dim or 0), dtype=np.float32))
        logger.info("embedding cache %s: %d keys in %d shards, read in %.1f s "
                    "(%d shards skipped, %d invalid rows)",
                    self.uri, len(self._index), len(self._shards),
                    time.monotonic() - started, len(self.skipped_shards), self.invalid_rows)
        return len(self._index)

    def count_invalid(self, keys: Sequence[str]) -> int:
        """Count ``keys`` whose only cached rows failed the row check of
        :meth:`load`."""
        return sum(key in self._invalid_keys for key in keys)

    def _read_shards(self) -> dict[str, tuple[list[str], np.ndarray]]:
        """Read every shard that exists, in listing order."""
        shards: dict[str, tuple[list[str | None], np.ndarray]] = {}
        for listing in ("first", "second"):
            vanished = 0
            for uri in self._list_shards():
                if uri in shards or uri in self.skipped_shards:
                    continue
                try:
                    shards[uri] = _read_shard(uri)
                except FileNotFoundError:
                    logger.debug("embedding cache: shard %s was deleted after the %s "
                                 "listing, by another run's merge", uri, listing)
                    vanished += 1
                except (OSError, ValueError) as error:
                    logger.warning("embedding cache: skipping unreadable shard %s: %s; "
                                   "delete the shard", uri, error)
                    self.skipped_shards.append(uri)
            if not vanished:
                break
            # A merge that deleted shards wrote their rows to a new shard.
            logger.debug("embedding cache: %d shards vanished after the %s listing "
                         "of %s", vanished, listing, self.uri)
        return shards

    def _list_shards(self) -> list[str]:
        return [
            uri for uri in storage.list_files(self.uri)
            if uri.rsplit("/", 1)[-1].startswith(_SHARD_PREFIX) and uri.endswith(_SHARD_SUFFIX)
        ]

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


class MalformedShardError(ValueError):
    """A cache shard without the ``key`` and ``embedding`` columns this module
    writes."""


def _read_shard(uri: str) -> tuple[list[str | None], np.ndarray]:
    """Read a shard's keys and its float32 ``[rows, dim]`` matrix.

    Raises:
        FileNotFoundError: if the shard no longer exists.
        MalformedShardError: if its columns are not those of a shard.
        OSError, ValueError: if Parquet cannot read it (pyarrow's
            ``ArrowInvalid`` is a ValueError).
    """
    table = storage.read_table(uri)
    names = table.schema.names
    if "key" not in names or "embedding" not in names:
        raise MalformedShardError(
            f"expected columns ['key', 'embedding'], found {names}")
    embedding_type = table.schema.field("embedding").type
    if not (pa.types.is_fixed_size_list(embedding_type)
            and pa.types.is_floating(embedding_type.value_type)):
        raise MalformedShardError(
            f"column 'embedding' has type {embedding_type}, expected a fixed-size "
            "list of floats")
    if not pa.types.is_string(table.schema.field("key").type):
        raise MalformedShardError(
            f"column 'key' has type {table.schema.field('key').type}, expected string")
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    # ``values`` keeps a slot per null row, unlike ``flatten()``; null rows
    # and null entries become NaN, which the row check rejects.
    values = column.values.slice(column.offset * dim, len(column) * dim)
    matrix = values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    if column.null_count:
        matrix[column.is_null().to_numpy(zero_copy_only=False)] = np.nan
    return table.column("key").to_pylist(), matrix


def _valid_rows(keys: list[str | None], matrix: np.ndarray) -> np.ndarray:
    """Return bool ``[rows]``: finite, unit-norm rows with a key."""
    norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
    finite = np.isfinite(matrix).all(axis=1)
    with np.errstate(invalid="ignore"):
        unit = np.abs(norms - 1.0) <= NORM_TOLERANCE
    has_key = np.array([bool(key) for key in keys], dtype=bool)
    return finite & unit & has_key


def _majority_dim(shards: dict[str, tuple[list[str | None], np.ndarray]]) -> int | None:
    """Return the dimension of most cached rows; ties go to the first shard."""
    rows_per_dim: dict[int, int] = {}
    for _, matrix in shards.values():
        rows_per_dim[matrix.shape[1]] = rows_per_dim.get(matrix.shape[1], 0) + len(matrix)
    return max(rows_per_dim, key=rows_per_dim.get) if rows_per_dim else None
