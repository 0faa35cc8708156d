"""Canonical tables of the data contract and their Arrow schemas.

Every stage reads and writes these three tables as Parquet:

* ``items``: one row per item of any type. ``item_id`` is unique across all
  types; the loaders prefix the publisher's id with the type
  (``movie:1193``, ``artist:51``, ``tag:7``) so ids of different types never
  collide. Text fields are nullable where a type lacks them.
* ``interactions``: one row per user event on an item. ``timestamp`` is UTC
  and null only for sources without time (Last.fm listens). ``weight`` is a
  non-negative strength (a rating, a play count, 1.0 for a tag use).
* ``users`` (optional): ``user_id`` plus categorical (string) or numeric
  feature columns, named freely.

Datasets whose tag events name the item they tag (Last.fm) also keep
``tag_applications``: one row per tag interaction with that item, so that
item text built from tags can be limited to the training split
(:mod:`gfm.data.item_text`).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

ITEMS = "items"
INTERACTIONS = "interactions"
USERS = "users"
TAG_APPLICATIONS = "tag_applications"

ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("item_type", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("description", pa.string()),
        pa.field("genres", pa.list_(pa.string())),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("creators", pa.list_(pa.string())),
        pa.field("language", pa.string()),
        pa.field("release_year", pa.int32()),
    ]
)

INTERACTIONS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("weight", pa.float32(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
    ]
)

# Only the key is fixed; feature columns are the dataset's own.
USERS_KEY_SCHEMA = pa.schema([pa.field("user_id", pa.string(), nullable=False)])

# ``user_id``, ``item_id`` (the tag item) and ``timestamp`` equal those of the
# tag's row in ``interactions``; ``tagged_item_id`` is the item it was applied to.
TAG_APPLICATIONS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("tagged_item_id", pa.string(), nullable=False),
    ]
)

SCHEMAS = {ITEMS: ITEMS_SCHEMA, INTERACTIONS: INTERACTIONS_SCHEMA,
           TAG_APPLICATIONS: TAG_APPLICATIONS_SCHEMA}

# Columns whose values must be present in every row.
REQUIRED_NON_NULL = {
    ITEMS: ("item_id", "item_type", "title"),
    INTERACTIONS: ("user_id", "item_id", "weight", "event_type"),
    USERS: ("user_id",),
}

# Free-text fields a template may render, in a stable order.
TEXT_FIELDS = (
    "title",
    "description",
    "genres",
    "tags",
    "creators",
    "language",
    "release_year",
)

# List-of-string columns of ITEMS_SCHEMA, held as Python lists (or None) in
# pandas.
LIST_COLUMNS = ("genres", "tags", "creators")


def frame_to_table(frame: pd.DataFrame, name: str) -> pa.Table:
    """Convert a contract DataFrame into an Arrow table of its schema.

    Args:
        frame: A table already in the contract, as ``validate_dataset``
            returns it.
        name: ``items``, ``interactions``, ``tag_applications`` or
            ``users``. The first three get exactly their schema's columns in
            schema order, and users keep every column with ``user_id`` first.

    Returns:
        The Arrow table.

    Raises:
        ValueError: if ``name`` is not a table of the contract, or a column
            is missing or cannot be converted to its schema type.
    """
    if name == USERS:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        return table.set_column(table.schema.get_field_index("user_id"), "user_id",
                                table.column("user_id").cast(pa.string()))
    if name not in SCHEMAS:
        raise ValueError(f"unknown table {name!r}; expected one of "
                         f"{[ITEMS, INTERACTIONS, TAG_APPLICATIONS, USERS]}")
    schema = SCHEMAS[name]
    missing = [column for column in schema.names if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing}; run "
                         f"gfm.data.validate.validate_dataset on it first")
    try:
        table = pa.Table.from_pandas(frame[schema.names], schema=schema,
                                     preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"{name} table does not fit its Arrow schema: {error}; run "
                         f"gfm.data.validate.validate_dataset on it first") from error
    # Without pandas' metadata the file schema is exactly the contract's.
    return table.replace_schema_metadata(None)


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """Convert an Arrow table of the contract into its pandas form.

    Strings stay ``object`` columns, list columns become Python lists or
    None, integer columns become nullable ``Int32``/``Int64`` and
    timestamps stay ``datetime64[us, UTC]`` with ``NaT`` for null.
    """
    frame = table.to_pandas(types_mapper={pa.int32(): pd.Int32Dtype(),
                                          pa.int64(): pd.Int64Dtype()}.get)
    for field in table.schema:
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            frame[field.name] = pd.Series(table.column(field.name).to_pylist(),
                                          index=frame.index, dtype=object)
    return frame
