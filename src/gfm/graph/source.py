"""Expose interactions to DuckDB as one view, whatever form they come in.

DataFrames and Arrow tables are scanned in place. Parquet files, folders and
globs are scanned by DuckDB straight from disk, so the rows never sit in
Python memory. The files of a folder or glob may differ in their optional
columns, because DuckDB matches columns by name across files. ``gs://``
inputs are downloaded to the build's working folder first, because DuckDB
reads GCS only through its ``httpfs`` extension, which it would download at
run time.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gfm import storage
from gfm.graph.errors import GraphInputError

logger = logging.getLogger(__name__)

Interactions = pd.DataFrame | pa.Table | str | os.PathLike

# The normalized view: user_id VARCHAR, item_id VARCHAR, ts (a timestamp or
# NULL) and w DOUBLE, one row per input row. w is NULL where a weight column
# contains a null, which the build drops as an invalid weight.
RAW_VIEW = "raw_interactions"

_SOURCE_NAME = "interactions_source"
_GLOB_CHARS = "*?["

# Files named in errors and logs about mixed Parquet schemas.
_FILE_EXAMPLES = 5

# DuckDB types accepted for `weight`, besides DECIMAL(p, s).
_NUMERIC_TYPES = frozenset(
    f"{prefix}{name}"
    for prefix in ("", "U")
    for name in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
) | {"FLOAT", "DOUBLE"}


def register_interactions(
    con: duckdb.DuckDBPyConnection, interactions: Interactions, workdir: Path
) -> str:
    """Create the view ``raw_interactions`` over ``interactions``.

    Args:
        con: the build's DuckDB connection.
        interactions: a DataFrame, an Arrow table, or a Parquet file, folder
            or glob, local or ``gs://``, in the interactions schema of
            ``gfm.data.schema``. Only ``user_id`` and ``item_id`` are
            required; without ``timestamp`` every row is undated, and without
            ``weight`` every row weighs 1.0. The same holds per file of a
            Parquet folder or glob.
        workdir: local folder for downloaded ``gs://`` files.

    Returns:
        A short description of the source, for logs.

    Raises:
        GraphInputError: if a required column is missing (from any Parquet
            file), ``timestamp`` is not a date or timestamp type, ``weight``
            is not numeric, or a Parquet file cannot be read.
        FileNotFoundError: if a path or glob matches no file.
    """
    if isinstance(interactions, pd.DataFrame):
        con.register(_SOURCE_NAME, interactions)
        description = f"DataFrame of {len(interactions)} rows"
    elif isinstance(interactions, pa.Table):
        con.register(_SOURCE_NAME, interactions)
        description = f"Arrow table of {interactions.num_rows} rows"
    elif isinstance(interactions, (str, os.PathLike)):
        files = _resolve_parquet_files(str(interactions), workdir)
        _register_parquet_files(con, files)
        description = f"{len(files)} Parquet file(s) from {interactions}"
    else:
        raise GraphInputError(
            f"interactions of type {type(interactions).__name__} are not supported; "
            "pass a pandas DataFrame, a pyarrow Table or a Parquet path"
        )

    columns = _column_types(con, _SOURCE_NAME)
    missing = [name for name in ("user_id", "item_id") if name not in columns]
    if missing:
        raise GraphInputError(
            f"interactions lack column(s) {missing}; found {sorted(columns)}. "
            "Use the interactions schema of gfm.data.schema"
        )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {RAW_VIEW} AS SELECT "
        "CAST(user_id AS VARCHAR) AS user_id, "
        "CAST(item_id AS VARCHAR) AS item_id, "
        f"{_timestamp_expression(columns)} AS ts, "
        f"{_weight_expression(columns)} AS w "
        f"FROM {_SOURCE_NAME}"
    )
    logger.info("reading interactions: %s", description)
    return description


def _column_types(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE {name}").fetchall()
    return {row[0]: str(row[1]).upper() for row in rows}


def _timestamp_expression(columns: dict[str, str]) -> str:
    kind = columns.get("timestamp")
    if kind is None:
        return "CAST(NULL AS TIMESTAMP)"
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        return "timestamp"
    if kind == '"NULL"' or kind == "NULL":
        # An all-null pandas column arrives without a type.
        return "CAST(NULL AS TIMESTAMP)"
    raise GraphInputError(
        f"interactions column 'timestamp' has type {kind}; expected a timestamp. "
        "Convert epoch seconds with pd.to_datetime(values, unit='s', utc=True)"
    )


def _weight_expression(columns: dict[str, str]) -> str:
    kind = columns.get("weight")
    if kind is None:
        return "1.0::DOUBLE"
    if (
        kind in _NUMERIC_TYPES
        or kind.startswith("DECIMAL")
        or kind in ('"NULL"', "NULL")
    ):
        return "CAST(weight AS DOUBLE)"
    raise GraphInputError(
        f"interactions column 'weight' has type {kind}; expected a number. "
        "Convert it with pd.to_numeric(values), or drop the column to weigh "
        "every row 1.0"
    )


def _register_parquet_files(con: duckdb.DuckDBPyConnection, files: list[str]) -> None:
    """Create the source view over Parquet files, matching columns by name.

    A column that some files lack reads as NULL in their rows, so those
    rows are undated when ``timestamp`` is missing. Rows of files without
    ``weight`` weigh 1.0, as for a source without the column. Those files
    are read as a view of their own, because a NULL weight is dropped as
    invalid.
    """
    without_weight = _check_parquet_schemas(files)
    weighted = [path for path in files if path not in without_weight]
    unweighted = [path for path in files if path in without_weight]
    if not weighted or not unweighted:
        con.read_parquet(files, union_by_name=True).create_view(_SOURCE_NAME)
        return
    con.read_parquet(weighted, union_by_name=True).create_view("weighted_files")
    con.read_parquet(unweighted, union_by_name=True).create_view("unweighted_files")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {_SOURCE_NAME} AS "
        "SELECT * FROM weighted_files UNION ALL BY NAME "
        "SELECT *, 1.0::DOUBLE AS weight FROM unweighted_files"
    )


def _check_parquet_schemas(files: list[str]) -> set[str]:
    """Check the columns of every Parquet file and return those without ``weight``.

    Raises:
        GraphInputError: if a file cannot be read, lacks ``user_id`` or
            ``item_id`` while others have it, or has a ``timestamp`` or
            ``weight`` column of the wrong type.
    """
    schemas = {}
    for path in files:
        try:
            schemas[path] = pq.read_schema(path)
        except pa.ArrowException as error:
            raise GraphInputError(
                f"interactions file {path} is not a readable Parquet file: {error}"
            ) from error

    for name, is_valid_type, expected in (
        ("timestamp", _is_time_type, "a timestamp or date"),
        ("weight", _is_number_type, "a number"),
    ):
        with_column = {
            path: schema for path, schema in schemas.items() if name in schema.names
        }
        invalid = [
            f"{path} ({schema.field(name).type})"
            for path, schema in with_column.items()
            if not is_valid_type(schema.field(name).type)
        ]
        # When every file has the wrong type, the check on the combined view
        # raises with a conversion hint. A mix fails only later, in DuckDB's
        # cast at query time, with an error that names no fix.
        if invalid and len(invalid) < len(with_column):
            raise GraphInputError(
                f"{len(invalid)} of {len(with_column)} interactions files have a "
                f"'{name}' column that is not {expected}, for example "
                f"{invalid[:_FILE_EXAMPLES]}; rewrite them with the interactions "
                "schema of gfm.data.schema"
            )

    for name, effect in (
        ("user_id", None),
        ("item_id", None),
        ("timestamp", "their rows are undated"),
        ("weight", "their rows weigh 1.0"),
    ):
        lacking = [path for path, schema in schemas.items() if name not in schema.names]
        if not lacking or len(lacking) == len(files):
            # A column that every file lacks is handled as for one file.
            continue
        message = (
            f"{len(lacking)} of {len(files)} interactions files lack column "
            f"'{name}', for example {lacking[:_FILE_EXAMPLES]}"
        )
        if effect is None:
            raise GraphInputError(
                f"{message}; every file needs user_id and item_id, so remove or "
                "rewrite those files"
            )
        logger.warning("%s; %s", message, effect)

    return {path for path, schema in schemas.items() if "weight" not in schema.names}


def _is_time_type(kind: pa.DataType) -> bool:
    return (
        pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_null(kind)
    )


def _is_number_type(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
    )


def _resolve_parquet_files(uri: str, workdir: Path) -> list[str]:
    """Return the local Parquet files a path, folder or glob names."""
    if storage.is_gcs(uri):
        return _download_gcs_parquet(uri, workdir)

    if any(char in uri for char in _GLOB_CHARS):
        files = sorted(glob.glob(uri, recursive=True))
    elif Path(uri).is_dir():
        files = sorted(str(p) for p in Path(uri).rglob("*.parquet"))
    else:
        files = [uri] if Path(uri).is_file() else []
    if not files:
        raise FileNotFoundError(f"no Parquet file matches the interactions path {uri}")
    return files


def _download_gcs_parquet(uri: str, workdir: Path) -> list[str]:
    if any(char in uri for char in _GLOB_CHARS):
        prefix = uri[: min(uri.find(char) for char in _GLOB_CHARS if char in uri)]
        prefix = prefix.rsplit("/", 1)[0]
        names = [
            name for name in storage.list_files(prefix) if fnmatch.fnmatch(name, uri)
        ]
    elif uri.endswith(".parquet"):
        names = [uri]
    else:
        names = [name for name in storage.list_files(uri) if name.endswith(".parquet")]
    if not names:
        raise FileNotFoundError(f"no Parquet object matches the interactions URI {uri}")

    files = []
    target_root = workdir / "gcs"
    for position, name in enumerate(names):
        target = target_root / f"part-{position:05d}.parquet"
        # NOTE: gfm.storage reads a whole object into memory, so one Parquet
        # object costs its size in RAM while it downloads. Split large
        # interaction tables into several objects.
        storage.write_bytes(target, storage.read_bytes(name))
        files.append(str(target))
    logger.info("downloaded %d Parquet object(s) from %s", len(files), uri)
    return files
