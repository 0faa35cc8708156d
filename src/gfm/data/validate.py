"""Validation of the three contract tables, with a report of what changed.

:func:`validate_dataset` turns frames from any source into the pandas form
of the contract in :mod:`gfm.data.schema`, or raises
:class:`DataValidationError` naming the table, the column, an offending
value and the fix. Errors cover missing columns, wrong types, nulls in
required columns, duplicate ids, unparsable or missing timestamps, negative
or non-finite weights and empty tables. Interactions on items missing from
the items table are dropped by policy, counted under ``unknown_item``, and
rejected instead when ``strict=True``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from gfm.data.schema import (
    INTERACTIONS,
    INTERACTIONS_SCHEMA,
    ITEMS,
    ITEMS_SCHEMA,
    LIST_COLUMNS,
    REQUIRED_NON_NULL,
    USERS,
)

logger = logging.getLogger(__name__)

# Drop reasons this module applies, always present in the report (with 0).
UNKNOWN_ITEM = "unknown_item"


class DataValidationError(ValueError):
    """A contract table is invalid; the message names the column and the fix."""


def record_drop(report: dict[str, Any], table: str, reason: str, count: int) -> None:
    """Add ``count`` rows of ``table`` dropped for ``reason`` to a report.

    Loaders call this for drops of their own (for example bogus dates), so
    that ``report["dropped"]`` lists every rule that removed rows.
    """
    dropped = report.setdefault("dropped", {}).setdefault(table, {})
    dropped[reason] = int(dropped.get(reason, 0)) + int(count)


def validate_dataset(
    items: pd.DataFrame,
    interactions: pd.DataFrame,
    users: pd.DataFrame | None = None,
    *,
    strict: bool = False,
    require_timestamps: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, dict[str, Any]]:
    """Check and normalize the tables of one dataset.

    Optional columns that are absent are added as null, and columns outside
    the items or interactions schema are removed and listed in the report
    (``strict`` rejects them). Timestamps may be datetimes (naive ones are
    read as UTC), Unix seconds or ISO 8601 strings.

    Args:
        items: One row per item, with at least ``item_id``, ``item_type``
            and ``title``.
        interactions: One row per event, with at least ``user_id``,
            ``item_id``, ``weight`` and ``event_type``.
        users: Optional user features keyed by a unique ``user_id``.
        strict: Raise instead of dropping rows or columns.
        require_timestamps: Reject interactions without a timestamp.

    Returns:
        ``(items, interactions, users, report)``: new frames in the contract
        (fresh ``RangeIndex``) and a JSON-ready report with ``rows_in``,
        ``rows_out``, ``dropped`` (table -> reason -> rows), ``conversions``,
        ``filled_columns``, ``dropped_columns`` and ``counts``.

    Raises:
        DataValidationError: on the first violated rule.
    """
    report: dict[str, Any] = {
        "rows_in": {ITEMS: _num_rows(items, ITEMS),
                    INTERACTIONS: _num_rows(interactions, INTERACTIONS)},
        "dropped": {INTERACTIONS: {UNKNOWN_ITEM: 0}},
        "conversions": [],
        "filled_columns": {},
        "dropped_columns": {},
    }
    if users is not None:
        report["rows_in"][USERS] = _num_rows(users, USERS)

    items = _validate_items(items, report, strict)
    interactions = _validate_interactions(interactions, report, strict,
                                          require_timestamps)
    interactions = _drop_unknown_items(interactions, items, report, strict)
    if users is not None:
        users = _validate_users(users)

    report["rows_out"] = {ITEMS: len(items), INTERACTIONS: len(interactions)}
    if users is not None:
        report["rows_out"][USERS] = len(users)
    report["counts"] = summarize(items, interactions, users)
    return items, interactions, users, report


def summarize(items: pd.DataFrame, interactions: pd.DataFrame,
              users: pd.DataFrame | None = None) -> dict[str, Any]:
    """Count items per type, interactions per event and item type, and users.

    Args:
        items: A contract items table.
        interactions: A contract interactions table on those items.
        users: The optional users table.

    Returns:
        A JSON-ready dict of counts and the UTC timestamp range.
    """
    item_type = interactions["item_id"].map(
        pd.Series(items["item_type"].to_numpy(), index=items["item_id"]))
    timestamps = interactions["timestamp"]
    with_time = int(timestamps.notna().sum())
    counts = {
        "items_by_type": _value_counts(items["item_type"]),
        "interactions_by_event_type": _value_counts(interactions["event_type"]),
        "interactions_by_item_type": _value_counts(item_type),
        "users_in_interactions": int(interactions["user_id"].nunique()),
        "items_with_interactions": int(interactions["item_id"].nunique()),
        "interactions_with_timestamp": with_time,
        "timestamp_min": timestamps.min().isoformat() if with_time else None,
        "timestamp_max": timestamps.max().isoformat() if with_time else None,
    }
    if users is not None:
        known = interactions["user_id"].isin(users["user_id"])
        counts["users"] = len(users)
        counts["interactions_without_user_row"] = int((~known).sum())
    return counts


def _value_counts(series: pd.Series) -> dict[str, int]:
    return {str(key): int(value) for key, value in series.value_counts().sort_index().items()}


def _num_rows(frame: Any, table: str) -> int:
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(
            f"{table} must be a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise DataValidationError(f"{table} table is empty; a dataset needs at "
                                  f"least one row in {table}")
    return len(frame)


# Tables -----------------------------------------------------------------


def _validate_items(items: pd.DataFrame, report: dict, strict: bool) -> pd.DataFrame:
    items = _conform_columns(items, ITEMS, ITEMS_SCHEMA.names, report, strict)
    for column in ("item_id", "item_type", "title", "description", "language"):
        items[column] = _as_strings(items[column], ITEMS, column)
    for column in LIST_COLUMNS:
        items[column] = _as_string_lists(items[column], ITEMS, column)
    items["release_year"] = _as_int32(items["release_year"], ITEMS, "release_year",
                                      report)
    _require_non_null(items, ITEMS)
    _require_unique(items, ITEMS, "item_id")
    return items


def _validate_interactions(interactions: pd.DataFrame, report: dict, strict: bool,
                           require_timestamps: bool) -> pd.DataFrame:
    interactions = _conform_columns(interactions, INTERACTIONS,
                                    INTERACTIONS_SCHEMA.names, report, strict)
    for column in ("user_id", "item_id", "event_type"):
        interactions[column] = _as_strings(interactions[column], INTERACTIONS, column)
    interactions["timestamp"] = _as_utc_timestamps(interactions["timestamp"], report)
    interactions["weight"] = _as_weights(interactions["weight"])
    _require_non_null(interactions, INTERACTIONS)

    if require_timestamps:
        missing = interactions["timestamp"].isna()
        if missing.any():
            row = interactions.index[missing.to_numpy()][0]
            raise DataValidationError(
                f"interactions.timestamp is missing in {int(missing.sum())} rows "
                f"(first in row {row}, user {interactions.at[row, 'user_id']!r}); "
                f"this dataset's split protocol needs a time for every event, so "
                f"fill them in or use a random split")
    return interactions


def _drop_unknown_items(interactions: pd.DataFrame, items: pd.DataFrame,
                        report: dict, strict: bool) -> pd.DataFrame:
    unknown = ~interactions["item_id"].isin(items["item_id"])
    count = int(unknown.sum())
    if count == 0:
        return interactions
    examples = interactions.loc[unknown, "item_id"].drop_duplicates().head(3).tolist()
    if strict:
        raise DataValidationError(
            f"interactions.item_id has {count} rows on items missing from the "
            f"items table, for example {examples}; add those items or pass "
            f"strict=False to drop the rows")
    logger.warning("dropping %d interactions on %d unknown items, for example %s",
                   count, interactions.loc[unknown, "item_id"].nunique(), examples)
    record_drop(report, INTERACTIONS, UNKNOWN_ITEM, count)
    return interactions.loc[~unknown].reset_index(drop=True)


def check_user_ids(users: pd.DataFrame) -> None:
    """Raise DataValidationError unless ``users`` has unique ``user_id`` values.

    Stages that take a users table call this, because a repeated id has two
    feature rows and no rule picks one of them.
    """
    if "user_id" not in users.columns:
        raise DataValidationError(
            f"users table lacks column 'user_id' (columns: {list(users.columns)}); "
            f"name the key column user_id")
    _require_unique(users.assign(user_id=users["user_id"].astype(str)), USERS, "user_id")


def _validate_users(users: pd.DataFrame) -> pd.DataFrame:
    if "user_id" not in users.columns:
        raise DataValidationError(
            f"users table lacks column 'user_id' (columns: {list(users.columns)}); "
            f"name the key column user_id")
    users = users.reset_index(drop=True).copy()
    users["user_id"] = _as_strings(users["user_id"], USERS, "user_id")
    _require_non_null(users, USERS)
    _require_unique(users, USERS, "user_id")
    for column in users.columns:
        if column == "user_id":
            continue
        series = users[column]
        kind = pd.api.types.infer_dtype(series, skipna=True)
        if kind not in ("string", "empty", "integer", "floating", "boolean",
                        "categorical", "mixed-integer-float"):
            raise DataValidationError(
                f"users.{column} has values of kind {kind!r}, first "
                f"{series.dropna().iloc[0]!r}; user features must be strings "
                f"(categorical) or numbers")
    ordered = ["user_id"] + [c for c in users.columns if c != "user_id"]
    return users[ordered]


# Columns ----------------------------------------------------------------


def _conform_columns(frame: pd.DataFrame, table: str, names: list[str],
                     report: dict, strict: bool) -> pd.DataFrame:
    required = REQUIRED_NON_NULL[table]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{table} table lacks required columns {missing} (columns: "
            f"{list(frame.columns)}); add them or rename the source columns")

    extra = [column for column in frame.columns if column not in names]
    if extra and strict:
        raise DataValidationError(
            f"{table} table has columns outside its schema {extra}; the schema "
            f"has {names}: remove them or pass strict=False to drop them")
    if extra:
        logger.warning("dropping %s columns outside the schema: %s", table, extra)
        report["dropped_columns"][table] = [str(c) for c in extra]

    absent = [column for column in names if column not in frame.columns]
    frame = frame.reset_index(drop=True).copy()
    for column in absent:
        frame[column] = None
    if absent:
        report["filled_columns"][table] = absent
    return frame[names]


def _first_bad(series: pd.Series, bad: pd.Series | np.ndarray) -> tuple[int, Any]:
    position = int(np.flatnonzero(np.asarray(bad))[0])
    value = series.iloc[position]
    # NumPy scalars print as np.int64(1); messages show the plain value.
    return position, value.item() if isinstance(value, np.generic) else value


def _as_strings(series: pd.Series, table: str, column: str) -> pd.Series:
    # Categorical and pandas string columns are held as plain object columns.
    if isinstance(series.dtype, (pd.CategoricalDtype, pd.StringDtype)):
        series = series.astype(object)
    series = series.where(series.notna(), None)
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind in ("string", "empty"):
        return series.astype(object)
    is_text = series.map(lambda value: value is None or isinstance(value, str))
    row, value = _first_bad(series, ~is_text)
    raise DataValidationError(
        f"{table}.{column} must be strings, but row {row} is "
        f"{type(value).__name__} {value!r}; convert the column with "
        f".astype(str) or read it as text")


def _as_string_lists(series: pd.Series, table: str, column: str) -> pd.Series:
    def convert(value: Any) -> list[str] | None:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        is_list = isinstance(value, (list, tuple, np.ndarray))
        if is_list and all(isinstance(element, str) for element in value):
            return list(value)
        raise TypeError(value)

    try:
        return series.map(convert).astype(object)
    except TypeError as error:
        value = error.args[0]
        raise DataValidationError(
            f"{table}.{column} must hold lists of strings or null, found "
            f"{type(value).__name__} {value!r}; split joined text into a list "
            f"(the files loader splits on '|')") from None


def _parse_numbers(series: pd.Series, column: str, expected: str, fix: str) -> pd.Series:
    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna() & series.notna()
    if bad.any():
        row, value = _first_bad(series, bad)
        raise DataValidationError(
            f"{column} must be {expected}, but row {row} is {value!r}; {fix}")
    return numbers


def _as_int32(series: pd.Series, table: str, column: str, report: dict) -> pd.Series:
    if series.isna().all():
        return pd.Series(pd.NA, index=series.index, dtype=pd.Int32Dtype())
    if not pd.api.types.is_numeric_dtype(series.dtype):
        series = _parse_numbers(series, f"{table}.{column}", "integers",
                                "fix the value or leave it empty")
        report["conversions"].append(f"{table}.{column}: values converted to Int32")
    fractional = (series.astype("Float64") % 1 != 0).fillna(False)
    if fractional.any():
        row, value = _first_bad(series, fractional)
        raise DataValidationError(
            f"{table}.{column} must be integers, but row {row} is {value!r}")
    return series.astype("Float64").astype(pd.Int32Dtype())


def _as_utc_timestamps(series: pd.Series, report: dict) -> pd.Series:
    column = f"{INTERACTIONS}.timestamp"
    if series.isna().all():
        return pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]")

    if isinstance(series.dtype, pd.DatetimeTZDtype):
        result = series.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(series.dtype):
        report["conversions"].append(f"{column}: naive datetimes read as UTC")
        result = series.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
            series.dtype):
        report["conversions"].append(f"{column}: numbers read as Unix seconds")
        result = pd.to_datetime(series, unit="s", utc=True)
    else:
        report["conversions"].append(f"{column}: parsed as ISO 8601 text")
        result = pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
        bad = result.isna() & series.notna()
        if bad.any():
            row, value = _first_bad(series, bad)
            raise DataValidationError(
                f"{column} has {int(bad.sum())} unparsable values, first "
                f"{value!r} in row {row}; write ISO 8601 (2003-01-31T12:00:00Z) "
                f"or Unix seconds")
    return result.astype("datetime64[us, UTC]")


def _as_weights(series: pd.Series) -> pd.Series:
    column = f"{INTERACTIONS}.weight"
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(
            series.dtype):
        series = _parse_numbers(series, column, "numeric",
                                "use 1.0 for unweighted events")
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    non_finite = ~np.isfinite(values) & ~np.isnan(values)
    if non_finite.any():
        row, value = _first_bad(series, non_finite)
        raise DataValidationError(f"{column} must be finite, but row {row} is {value}")
    negative = values < 0
    if negative.any():
        row, value = _first_bad(series, negative)
        raise DataValidationError(
            f"{column} has {int(negative.sum())} negative values, first {value} in "
            f"row {row}; weights are non-negative strengths (ratings, counts), so "
            f"shift or clip them in the source")
    return pd.Series(values.astype(np.float32), index=series.index)


def _require_non_null(frame: pd.DataFrame, table: str) -> None:
    for column in REQUIRED_NON_NULL[table]:
        missing = frame[column].isna()
        if missing.any():
            row = int(np.flatnonzero(missing.to_numpy())[0])
            raise DataValidationError(
                f"{table}.{column} is required but null in {int(missing.sum())} "
                f"rows (first row {row}); fill it in or remove those rows")


def _require_unique(frame: pd.DataFrame, table: str, column: str) -> None:
    duplicated = frame[column].duplicated(keep=False)
    if duplicated.any():
        examples = frame.loc[duplicated, column].drop_duplicates().head(3).tolist()
        raise DataValidationError(
            f"{table}.{column} must be unique, but {frame.loc[duplicated, column].nunique()} "
            f"values repeat, for example {examples}; merge or rename those rows")
