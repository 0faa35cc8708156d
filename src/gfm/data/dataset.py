"""The :class:`Dataset`: the three contract tables of one source and its report.

On storage a dataset is a folder (local or ``gs://``) holding
``items.parquet``, ``interactions.parquet``, an optional ``users.parquet``
(all in the schemas of :mod:`gfm.data.schema`) and ``report.json`` (row
counts per table and item type, and rows dropped by each validation rule).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gfm import storage
from gfm.data.schema import (
    INTERACTIONS,
    ITEMS,
    USERS,
    frame_to_table,
    table_to_frame,
)

logger = logging.getLogger(__name__)

ITEMS_FILE = "items.parquet"
INTERACTIONS_FILE = "interactions.parquet"
USERS_FILE = "users.parquet"
REPORT_FILE = "report.json"


@dataclass
class Dataset:
    """Items, interactions and optional user features of one source.

    Attributes:
        name: Dataset name, for example ``movielens-1m``.
        items: Contract items table, one row per catalog item (items without
            interactions included).
        interactions: Contract interactions table.
        users: Optional users table (``user_id`` and feature columns).
        report: JSON-ready counts and drops from loading and validation.
    """

    name: str
    items: pd.DataFrame
    interactions: pd.DataFrame
    users: pd.DataFrame | None = None
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def item_types(self) -> list[str]:
        """Sorted distinct item types of the catalog."""
        return sorted(self.items["item_type"].unique().tolist())

    def save(self, uri: str | os.PathLike) -> None:
        """Write the dataset folder at ``uri``.

        Raises:
            ValueError: if a table does not fit its Arrow schema.
        """
        started = time.monotonic()
        storage.write_table(frame_to_table(self.items, ITEMS),
                            storage.join(uri, ITEMS_FILE))
        storage.write_table(frame_to_table(self.interactions, INTERACTIONS),
                            storage.join(uri, INTERACTIONS_FILE))
        users_uri = storage.join(uri, USERS_FILE)
        if self.users is not None:
            storage.write_table(frame_to_table(self.users, USERS), users_uri)
        elif storage.exists(users_uri):
            # A stale users table from an earlier save would be read back.
            storage.delete(users_uri)
        storage.write_json(storage.join(uri, REPORT_FILE),
                           dict(self.report, name=self.name))
        logger.info("saved dataset %s (%d items, %d interactions) to %s in %.2f s",
                    self.name, len(self.items), len(self.interactions), uri,
                    time.monotonic() - started)

    @classmethod
    def load(cls, uri: str | os.PathLike) -> Dataset:
        """Read a dataset folder written by :meth:`save`.

        Raises:
            FileNotFoundError: if ``items.parquet``, ``interactions.parquet``
                or ``report.json`` is missing.
        """
        report = storage.read_json(storage.join(uri, REPORT_FILE))
        items = table_to_frame(storage.read_table(storage.join(uri, ITEMS_FILE)))
        interactions = table_to_frame(
            storage.read_table(storage.join(uri, INTERACTIONS_FILE)))
        users = None
        users_uri = storage.join(uri, USERS_FILE)
        if storage.exists(users_uri):
            users = table_to_frame(storage.read_table(users_uri))
        name = report.pop("name", None) or os.path.basename(str(uri).rstrip("/"))
        logger.info("loaded dataset %s (%d items, %d interactions) from %s",
                    name, len(items), len(interactions), uri)
        return cls(name=name, items=items, interactions=interactions, users=users,
                   report=report)
