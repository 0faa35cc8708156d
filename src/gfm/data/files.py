"""Loader of tables that already follow the data contract, as Parquet or CSV.

The folder (local or ``gs://``) contains ``items``, ``interactions`` and
optionally ``users``, each as ``<table>.parquet`` or ``<table>.csv``. In
CSV, list columns (``genres``, ``tags``, ``creators``) are text joined by
``|`` and timestamps are ISO 8601 or Unix seconds. Ids are always read
as text.
"""

from __future__ import annotations

import io
import logging
import os
import time

import pandas as pd

from gfm import storage
from gfm.data.dataset import Dataset
from gfm.data.schema import INTERACTIONS, ITEMS, LIST_COLUMNS, USERS, table_to_frame
from gfm.data.validate import validate_dataset

logger = logging.getLogger(__name__)

# Columns read as text from CSV, so ids such as 007 keep their zeros.
_TEXT_COLUMNS = ("item_id", "item_type", "title", "description", "language",
                 "user_id", "event_type", "timestamp") + LIST_COLUMNS


def load_files(path: str | os.PathLike, *, strict: bool = False,
               dataset_name: str | None = None, list_separator: str = "|",
               require_timestamps: bool = False) -> Dataset:
    """Load contract tables from a folder and validate them.

    Args:
        path: Folder or ``gs://`` prefix with the table files.
        strict: Raise instead of dropping any row or column.
        dataset_name: Dataset name; defaults to the folder's base name.
        list_separator: Separator of list columns in CSV files.
        require_timestamps: Reject interactions without a timestamp.

    Returns:
        The validated dataset.

    Raises:
        FileNotFoundError: if ``items`` or ``interactions`` is missing.
        ValueError: if a table exists as both Parquet and CSV.
        DataValidationError: if a table breaks the contract.
    """
    started = time.monotonic()
    path = str(path)
    items = _read_table(path, ITEMS, list_separator)
    interactions = _read_table(path, INTERACTIONS, list_separator)
    users = _read_table(path, USERS, list_separator, optional=True)
    if items is None or interactions is None:
        raise FileNotFoundError(
            f"{path} must contain items.parquet or items.csv and "
            f"interactions.parquet or interactions.csv")

    items, interactions, users, report = validate_dataset(
        items, interactions, users, strict=strict,
        require_timestamps=require_timestamps)
    name = dataset_name or os.path.basename(path.rstrip("/")) or "files"
    report["source"] = {"dataset": name, "loader": "files"}
    logger.info("loaded %s from %s: %d items, %d interactions in %.1f s", name, path,
                len(items), len(interactions), time.monotonic() - started)
    return Dataset(name=name, items=items, interactions=interactions, users=users,
                   report=report)


def _read_table(path: str, table: str, list_separator: str,
                optional: bool = False) -> pd.DataFrame | None:
    parquet_uri = storage.join(path, f"{table}.parquet")
    csv_uri = storage.join(path, f"{table}.csv")
    has_parquet, has_csv = storage.exists(parquet_uri), storage.exists(csv_uri)
    if has_parquet and has_csv:
        raise ValueError(f"both {parquet_uri} and {csv_uri} exist; keep one of them")
    if has_parquet:
        return table_to_frame(storage.read_table(parquet_uri))
    if has_csv:
        return _read_csv(csv_uri, list_separator)
    if optional:
        return None
    raise FileNotFoundError(f"{table} table not found: expected {parquet_uri} or "
                            f"{csv_uri}")


def _read_csv(uri: str, list_separator: str) -> pd.DataFrame:
    data = storage.read_bytes(uri)
    header = pd.read_csv(io.BytesIO(data), nrows=0).columns
    dtype = {column: str for column in header if column in _TEXT_COLUMNS}
    frame = pd.read_csv(io.BytesIO(data), dtype=dtype, keep_default_na=False,
                        na_values=[""])
    for column in LIST_COLUMNS:
        if column in frame.columns:
            frame[column] = [value.split(list_separator) if isinstance(value, str)
                             else None for value in frame[column]]
    if "timestamp" in frame.columns:
        # Unix seconds in CSV arrive as text; the validator parses numbers.
        numeric = pd.to_numeric(frame["timestamp"], errors="coerce")
        if numeric.notna().sum() == frame["timestamp"].notna().sum():
            frame["timestamp"] = numeric
    return frame
