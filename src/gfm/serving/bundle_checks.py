"""Checks a serving bundle must pass before the server reports ready.

``Bundle.load`` already checks the format version, dimensions, id maps and
product list. These checks cover what serving relies on beyond that. Every
number it ranks with must be finite: each row of the ``hgnn/`` and ``llm/``
embeddings (the user towers' history inputs), each item vector and each
user tower weight. Item vectors must be unit-norm because scores are
cosines. Each item's type must be one of its product's item types,
popularity must be aligned with the items, and each user tower must produce
vectors of its item matrix's dimension. A bundle that fails any of them
would answer requests with wrong or ``NaN`` scores, so it is rejected whole.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Tolerance on the L2 norm of each item vector, as float32 rounding allows.
NORM_TOLERANCE = 1e-3

# Rows checked at once for non-finite values, so the check of a large
# matrix allocates one small boolean block instead of a full-size mask.
FINITE_CHECK_ROWS = 65536


def check_bundle(bundle: Any) -> None:
    """Check that every product of a loaded bundle can be served.

    Args:
        bundle: a ``gfm.twotower.bundle.Bundle``.

    Raises:
        gfm.twotower.bundle.BundleError: naming the product and the problem.
    """
    from gfm.twotower.bundle import BundleError

    if not isinstance(bundle.model_version, str) or not bundle.model_version:
        raise BundleError(f"bundle model_version must be a non-empty string, "
                          f"got {bundle.model_version!r}")
    if not bundle.products:
        raise BundleError("bundle has no products; export at least one product model")

    for name, table in bundle.embeddings.items():
        row = first_non_finite_row(table.matrix)
        if row is not None:
            raise BundleError(f"{name}/embeddings.npy: row {row} (item {table.item_ids[row]!r}) "
                              "contains NaN or infinity; export the embeddings again")
    for name, product in bundle.products.items():
        _check_product(name, product, bundle, BundleError)


def first_non_finite_row(matrix: Any) -> int | None:
    """Return the first row of a 2-D array with a NaN or infinite value, or ``None``."""
    matrix = np.asarray(matrix)
    for start in range(0, len(matrix), FINITE_CHECK_ROWS):
        block = matrix[start:start + FINITE_CHECK_ROWS]
        bad = np.flatnonzero(~np.isfinite(block).reshape(len(block), -1).all(axis=1))
        if len(bad):
            return start + int(bad[0])
    return None


def _check_product(name: str, product: Any, bundle: Any, error: type[ValueError]) -> None:
    where = f"product {name!r}"
    item_ids = list(product.item_ids)
    item_types = list(product.item_types_of_rows)
    if not item_ids:
        raise error(f"{where} has no items")
    if len(item_types) != len(item_ids):
        raise error(f"{where} has {len(item_ids)} item ids but {len(item_types)} item types")
    if len(set(item_ids)) != len(item_ids):
        raise error(f"{where} has duplicate item ids")
    missing = [i for i in item_ids if i not in bundle.item_index]
    if missing:
        raise error(f"{where}: {len(missing)} item ids are not in the bundle catalog, "
                    f"first {missing[0]!r}")
    _check_item_types(where, name, item_ids, item_types, product.item_types, error)

    vectors = np.asarray(product.item_vectors())
    if vectors.ndim != 2 or vectors.shape[0] != len(item_ids):
        raise error(f"{where}: item vectors have shape {vectors.shape}, expected "
                    f"[{len(item_ids)}, dim]")
    bad = first_non_finite_row(vectors)
    if bad is not None:
        raise error(f"{where}: item vector of {item_ids[bad]!r} (row {bad} of "
                    f"products/{name}/item_vectors.npy) is not finite")
    norms = np.linalg.norm(vectors, axis=1)
    off = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if len(off):
        raise error(f"{where}: {len(off)} item vectors are not L2-normalized, first "
                    f"{item_ids[off[0]]!r} with norm {norms[off[0]]:.4f}")

    popularity = np.asarray(bundle.popularity(name))
    if popularity.shape != (len(item_ids),):
        raise error(f"{where}: popularity has shape {popularity.shape}, expected "
                    f"[{len(item_ids)}]")
    if not np.isfinite(popularity).all() or (popularity < 0).any():
        raise error(f"{where}: popularity must be finite and non-negative")

    for parameter, tensor in product.user_tower.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise error(f"{where}: products/{name}/user_tower.pt has non-finite values in "
                        f"{parameter}; train or export the model again")

    # One forward pass of the user tower on a one-item history: catches a
    # tower whose output dimension or weights do not match the item matrix.
    probe = np.asarray(product.user_vectors([[item_ids[0]]]))
    if probe.shape != (1, vectors.shape[1]):
        raise error(f"{where}: user tower output has shape {probe.shape}, expected "
                    f"[1, {vectors.shape[1]}] to match the item vectors")
    if not np.isfinite(probe).all():
        raise error(f"{where}: user tower output is not finite")
    logger.debug("%s passed the serving checks: %d items, dim %d",
                 where, len(item_ids), vectors.shape[1])


def _check_item_types(where: str, name: str, item_ids: Sequence[str],
                      item_types: Sequence[str], allowed: Sequence[str],
                      error: type[ValueError]) -> None:
    # A foreign type would become a valid item_types filter of requests.
    foreign = [row for row, item_type in enumerate(item_types) if item_type not in allowed]
    if foreign:
        row = foreign[0]
        raise error(f"{where}: {len(foreign)} rows of products/{name}/items.parquet have "
                    f"an item type outside the product's item types {list(allowed)}, first "
                    f"{item_ids[row]!r} of type {item_types[row]!r}")
