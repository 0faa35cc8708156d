"""Item tag text built from the training split only.

Some item text comes from user events rather than from the catalogue: a
Last.fm artist's ``tags`` are the tags users applied to it most often. Built
from every event, that text would carry the validation and test periods
into the LLM item features, and from them into every model that uses them.
Loaders of such datasets therefore leave the field null and keep the events
in ``Dataset.tag_applications``. :func:`items_for_split` fills the field from
the applications whose tag interaction is in the split's ``train`` part,
and both the pipeline's featurize step and the experiment runner embed its
output.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from gfm.data.dataset import Dataset
from gfm.data.splits import Split

logger = logging.getLogger(__name__)

# Used when the dataset's report does not record ``artist_top_tags``.
DEFAULT_TOP_TAGS = 10
KEY_COLUMNS = ["user_id", "item_id", "timestamp"]


def items_for_split(dataset: Dataset, split: Split,
                    top_tags: int | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return the items table whose tag text uses only training tag applications.

    An application counts when its ``(user_id, item_id, timestamp)`` matches
    a row of ``split.train`` and no row of ``split.valid`` or ``split.test``.
    The second condition matters only for splits that can send equal keys
    to different parts (random or leave-last-n): such keys are left out. A
    temporal split sends every row of a timestamp to the same part.

    Each tagged item's ``tags`` become the texts (tag item titles) of its
    ``top_tags`` most frequent counted tags, most frequent first and ties by
    text. A tagged item without counted applications gets null.

    Args:
        dataset: the dataset; without ``tag_applications`` its items are
            returned unchanged.
        split: the dataset's split.
        top_tags: tags per item; None reads ``report["source"]["artist_top_tags"]``
            and falls back to 10.

    Returns:
        A copy of ``dataset.items`` and the counts of applications by
        outcome: ``used``, ``in_valid_or_test``, ``not_in_split`` (dropped
        by the split, such as cold items or rows outside a time window),
        ``on_unknown_items`` (a tagged item or tag not in the catalogue), and
        ``items_with_tags``.

    Raises:
        ValueError: if ``top_tags`` is negative.
    """
    items = dataset.items.copy()
    applications = dataset.tag_applications
    if applications is None:
        return items, {}
    if top_tags is None:
        top_tags = int(dataset.report.get("source", {}).get("artist_top_tags",
                                                            DEFAULT_TOP_TAGS))
    if top_tags < 0:
        raise ValueError(f"top_tags must be >= 0, got {top_tags}")

    in_train = _matches(applications, split.train)
    in_other = _matches(applications, pd.concat([split.valid, split.test]))
    titles = items.set_index("item_id")["title"]
    known = (applications["tagged_item_id"].isin(titles.index)
             & applications["item_id"].isin(titles.index)).to_numpy()
    used = in_train & ~in_other & known
    report = {
        "tag_applications": len(applications),
        "used": int(used.sum()),
        "in_valid_or_test": int((in_other & known).sum()),
        "not_in_split": int((~in_train & ~in_other & known).sum()),
        "on_unknown_items": int((~known).sum()),
    }

    counted = applications.loc[used, ["tagged_item_id", "item_id"]]
    tag_lists = _top_tag_texts(counted, titles, top_tags)
    tagged = items["item_id"].isin(applications["tagged_item_id"])
    items.loc[tagged, "tags"] = items.loc[tagged, "item_id"].map(tag_lists)
    items["tags"] = items["tags"].astype(object).where(items["tags"].notna(), None)
    report["items_with_tags"] = int(items.loc[tagged, "tags"].notna().sum())
    logger.info("built tag text of %d items from %d of %d tag applications; left out "
                "%d in valid or test, %d not in the split and %d on unknown items",
                report["items_with_tags"], report["used"], len(applications),
                report["in_valid_or_test"], report["not_in_split"],
                report["on_unknown_items"])
    return items, report


def _matches(applications: pd.DataFrame, interactions: pd.DataFrame) -> np.ndarray:
    keys = interactions[KEY_COLUMNS].drop_duplicates()
    merged = applications[KEY_COLUMNS].merge(keys, on=KEY_COLUMNS, how="left",
                                             indicator=True)
    return (merged["_merge"] == "both").to_numpy()


def _top_tag_texts(counted: pd.DataFrame, titles: pd.Series, top_tags: int) -> pd.Series:
    counts = counted.groupby(["tagged_item_id", "item_id"]).size().rename("count")
    counts = counts.reset_index()
    counts["text"] = counts["item_id"].map(titles)
    counts = counts.sort_values(["tagged_item_id", "count", "text"],
                                ascending=[True, False, True])
    top = counts.groupby("tagged_item_id").head(top_tags)
    return top.groupby("tagged_item_id")["text"].agg(list)
