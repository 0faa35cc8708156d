"""Checks on the items table and the texts that featurization embeds."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from gfm.featurize.config import FeaturizeConfig
from gfm.featurize.templates import render_catalog

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("item_id", "item_type")


def validate_items(items: pd.DataFrame) -> None:
    """Check that ``items`` is a non-empty table with non-null ids that are
    unique as strings, the form the output stores.

    Raises:
        ValueError: naming the problem, its count and the first offending ids.
    """
    if not isinstance(items, pd.DataFrame):
        raise ValueError(f"items must be a pandas DataFrame, got {type(items).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in items.columns]
    if missing:
        raise ValueError(
            f"items table lacks column(s) {missing}; it must follow "
            "gfm.data.schema.ITEMS_SCHEMA"
        )
    if items.empty:
        raise ValueError("items table is empty; featurize needs at least one item")
    for column in REQUIRED_COLUMNS:
        nulls = int(items[column].isna().sum())
        if nulls:
            raise ValueError(f"{nulls} items have a null {column}; every item needs one")
    # The output stores ids as strings, so 1 and "1" are the same id there.
    ids = items["item_id"].astype(str)
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        first = list(dict.fromkeys(ids[duplicated].tolist()))[:5]
        spellings = {
            item_id: list(dict.fromkeys(items["item_id"][ids == item_id].tolist()))
            for item_id in first
        }
        colliding = {item_id: values for item_id, values in spellings.items()
                     if len(values) > 1}
        detail = (f"; as strings these collide: {colliding}, because the output "
                  "stores item ids as strings" if colliding else "")
        raise ValueError(
            f"{ids[duplicated].nunique()} item ids occur more than once "
            f"({int(duplicated.sum())} rows), first {first}{detail}; deduplicate "
            "the items table"
        )


@dataclass
class CatalogTexts:
    """The text of every item and what rendering reported.

    Attributes:
        texts: ``[num_items]`` text embedded for each row, in row order.
        templates: ``[num_items]`` the template source used for each row.
        items_per_type: item count per item type.
        missing_fields: per item type, count of items per field that had no
            value.
        empty_texts: count per item type of items whose rendered text was
            empty and was replaced by the item type's name.
    """

    texts: list[str]
    templates: list[str]
    items_per_type: dict[str, int]
    missing_fields: dict[str, dict[str, int]]
    empty_texts: dict[str, int] = field(default_factory=dict)


def prepare_texts(items: pd.DataFrame, config: FeaturizeConfig) -> CatalogTexts:
    """Validate ``items`` and render the text of each row.

    Raises:
        ValueError: on an invalid items table, an item type without a
            template, or (with ``empty_text="error"``) an empty text.
    """
    validate_items(items)
    rendered = render_catalog(items, config.templates)
    types = items["item_type"].astype(str).tolist()
    ids = items["item_id"].astype(str).tolist()
    texts = list(rendered.texts)

    empty = Counter(types[row] for row in rendered.empty_rows)
    if rendered.empty_rows and config.empty_text == "error":
        first = [ids[row] for row in rendered.empty_rows[:5]]
        raise ValueError(
            f"{len(rendered.empty_rows)} items render to an empty text (per type "
            f"{dict(empty)}), first {first}; fill their fields, change the "
            "templates, or set featurize.empty_text='item_type'"
        )
    for row in rendered.empty_rows:
        texts[row] = types[row]
    if rendered.empty_rows:
        logger.warning("%d items rendered to an empty text and are embedded as their "
                       "item type's name (per type %s), first %s",
                       len(rendered.empty_rows), dict(empty),
                       [ids[row] for row in rendered.empty_rows[:5]])
    if rendered.missing_fields:
        logger.info("items with a missing field, per item type and field: %s",
                    rendered.missing_fields)

    return CatalogTexts(
        texts=texts,
        templates=[config.templates[t] for t in types],
        items_per_type=dict(Counter(types)),
        missing_fields=rendered.missing_fields,
        empty_texts=dict(empty),
    )
