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
"""

from __future__ import annotations

import pyarrow as pa

ITEMS = "items"
INTERACTIONS = "interactions"
USERS = "users"

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

SCHEMAS = {ITEMS: ITEMS_SCHEMA, INTERACTIONS: INTERACTIONS_SCHEMA}

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
