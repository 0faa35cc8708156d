"""The :class:`Dataset`: the three contract tables of one source and its report.

On storage a dataset is a folder (local or ``gs://``) holding
``items.parquet``, ``interactions.parquet``, an optional ``users.parquet``,
an optional ``tag_applications.parquet`` (all in the schemas of
:mod:`gfm.data.schema`) and ``report.json`` (row counts per table and item
type, and rows dropped by each validation rule).
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
    TAG_APPLICATIONS,
    USERS,
    frame_to_table,
    table_to_frame,
)

logger = logging.getLogger(__name__)

ITEMS_FILE = "items.parquet"
INTERACTIONS_FILE = "interactions.parquet"
USERS_FILE = "users.parquet"
TAG_APPLICATIONS_FILE = "tag_applications.parquet"
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
        tag_applications: Optional table of the item each tag interaction
            was applied to (``gfm.data.schema.TAG_APPLICATIONS_SCHEMA``),
            from which :func:`gfm.data.item_text.items_for_split` builds
            item tag text.
    """

    name: str
    items: pd.DataFrame
    interactions: pd.DataFrame
    users: pd.DataFrame | None = None
    report: dict[str, Any] = field(default_factory=dict)
    tag_applications: pd.DataFrame | None = None

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
        optional = ((USERS_FILE, USERS, self.users),
                    (TAG_APPLICATIONS_FILE, TAG_APPLICATIONS, self.tag_applications))
        for file_name, table_name, frame in optional:
            table_uri = storage.join(uri, file_name)
            if frame is not None:
                storage.write_table(frame_to_table(frame, table_name), table_uri)
            elif storage.exists(table_uri):
                # A stale table from an earlier save would be read back.
                storage.delete(table_uri)
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
        users = _read_optional(storage.join(uri, USERS_FILE))
        tag_applications = _read_optional(storage.join(uri, TAG_APPLICATIONS_FILE))
        name = report.pop("name", None) or os.path.basename(str(uri).rstrip("/"))
        logger.info("loaded dataset %s (%d items, %d interactions) from %s",
                    name, len(items), len(interactions), uri)
        return cls(name=name, items=items, interactions=interactions, users=users,
                   report=report, tag_applications=tag_applications)


def _read_optional(uri: str) -> pd.DataFrame | None:
    if not storage.exists(uri):
        return None
    return table_to_frame(storage.read_table(uri))
