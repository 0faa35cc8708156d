"""Loader of hetrec2011-lastfm-2k (Last.fm, HetRec 2011) into the data contract.

Two item types share one set of users:

* ``artist`` items (``artist:<id>``) with ``listen`` interactions from
  ``user_artists.dat``, whose ``weight`` is the play count. Listens carry no
  time, so their ``timestamp`` is null.
* ``tag`` items (``tag:<tagID>``, titled by the tag text) with ``tag``
  interactions from ``user_taggedartists.dat``: one row per tag application
  (user, tag, artist), dated by day, with ``weight`` 1.0. The artist of each
  application is kept in ``Dataset.tag_applications``.

An artist's ``tags`` text is left null here, because the tags users applied
to it are interactions: built from every application, the text would carry
the validation and test periods into the LLM features.
:func:`gfm.data.item_text.items_for_split` fills it from the applications of
the training split.

Files are tab-separated with a header line. ``tags.dat`` is ISO-8859-1 in
the official archive and UTF-8 in some copies, so both are accepted.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gfm.data.dataset import Dataset
from gfm.data.download import ArchiveSpec, ensure_files
from gfm.data.movielens import decode_text
from gfm.data.validate import DataValidationError, record_drop, validate_dataset

logger = logging.getLogger(__name__)

NAME = "lastfm-2k"
ARTIST, TAG = "artist", "tag"
LISTEN = "listen"

SPEC = ArchiveSpec(
    name="lastfm-2k",
    url="https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
    url_env="GFM_LASTFM_2K_URL",
    line_counts={"artists.dat": 17_633, "tags.dat": 11_947,
                 "user_artists.dat": 92_835, "user_taggedartists.dat": 186_480},
)

# Tag applications dated outside this window are dropped. The file's dates
# run from 2005 to May 2011 (the dataset's version 1.0 is dated May 2011),
# apart from 5 rows dated 1956, 1957 and 1979, which no Last.fm user can
# have made.
DEFAULT_TAG_MIN_DATE = "2005-01-01"
DEFAULT_TAG_MAX_DATE = "2011-05-31"
# How many of an artist's most frequent tags become its ``tags`` text.
DEFAULT_ARTIST_TOP_TAGS = 10

INVALID_TAG_DATE = "invalid_tag_date"
TAG_DATE_OUT_OF_RANGE = "tag_date_out_of_range"


def load_lastfm_2k(
    data_dir: str | os.PathLike | None = None,
    *,
    strict: bool = False,
    tag_min_date: str = DEFAULT_TAG_MIN_DATE,
    tag_max_date: str = DEFAULT_TAG_MAX_DATE,
    artist_top_tags: int = DEFAULT_ARTIST_TOP_TAGS,
) -> Dataset:
    """Load Last.fm-2k as ``artist`` and ``tag`` items with their events.

    Every artist of ``artists.dat`` (17,632) and every tag of ``tags.dat``
    (11,946) is an item. Artists' ``tags`` are null, and the dataset's
    ``tag_applications`` name the artist of each tag interaction, for
    :func:`gfm.data.item_text.items_for_split`. Tag applications with an
    impossible date or one outside ``[tag_min_date, tag_max_date]`` are
    dropped and counted in ``report["dropped"]["interactions"]``.

    Args:
        data_dir: Folder containing ``lastfm-2k/``; defaults to
            ``GFM_DATA_DIR``. The official archive is downloaded when the
            files are absent.
        strict: Raise instead of dropping any row.
        tag_min_date: First valid day of a tag application (ISO 8601).
        tag_max_date: Last valid day of a tag application (ISO 8601).
        artist_top_tags: How many tag texts each artist's text keeps,
            recorded in ``report["source"]`` for ``items_for_split``.

    Returns:
        The validated dataset, without a users table.

    Raises:
        ValueError: if an option is invalid.
        DataValidationError: in strict mode, on the first dropped row.
    """
    if artist_top_tags < 0:
        raise ValueError(f"artist_top_tags must be >= 0, got {artist_top_tags}")
    min_date = pd.Timestamp(tag_min_date, tz="UTC")
    max_date = pd.Timestamp(tag_max_date, tz="UTC")
    if min_date > max_date:
        raise ValueError(f"tag_min_date {tag_min_date} is after tag_max_date "
                         f"{tag_max_date}")

    started = time.monotonic()
    folder = ensure_files(SPEC, data_dir)
    artists = _read_tsv(folder / "artists.dat")
    tags = _read_tsv(folder / "tags.dat")
    listens = _read_tsv(folder / "user_artists.dat")
    applications = _read_tsv(folder / "user_taggedartists.dat")

    drops: dict[str, int] = {}
    applications = _date_applications(applications, min_date, max_date, drops,
                                      strict)
    items = pd.concat([_artist_items(artists), _tag_items(tags)], ignore_index=True)
    interactions = pd.concat([_listen_interactions(listens),
                              _tag_interactions(applications)], ignore_index=True)

    items, interactions, _, report = validate_dataset(items, interactions,
                                                      strict=strict)
    # Rows dropped here count as read, so rows_in - dropped = rows_out holds.
    report["rows_in"]["interactions"] += sum(drops.values())
    for reason, count in drops.items():
        record_drop(report, "interactions", reason, count)
    unknown_artists = ~applications["artistID"].isin(artists["id"])
    report["source"] = {
        "dataset": NAME,
        "url": SPEC.resolved_url(),
        "tag_applications_read": int(len(applications) + sum(drops.values())),
        "tag_date_window": [min_date.date().isoformat(), max_date.date().isoformat()],
        # Kept, because the interaction's item is the tag, but these artists
        # get no item and contribute no tag text.
        "tag_applications_on_unlisted_artists": int(unknown_artists.sum()),
        "artist_top_tags": int(artist_top_tags),
    }
    logger.info("loaded %s: %d items, %d interactions (%d dropped) in %.1f s", NAME,
                len(items), len(interactions), sum(drops.values()),
                time.monotonic() - started)
    return Dataset(name=NAME, items=items, interactions=interactions, users=None,
                   report=report, tag_applications=_tag_applications(applications))


def _read_tsv(path: Path) -> pd.DataFrame:
    # Artist names and tags contain quotes, so quoting is off; ids stay text.
    return pd.read_csv(io.StringIO(decode_text(path.read_bytes())), sep="\t",
                       dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False,
                       engine="c")


def _date_applications(applications: pd.DataFrame, min_date: pd.Timestamp,
                       max_date: pd.Timestamp, drops: dict[str, int],
                       strict: bool) -> pd.DataFrame:
    parts = applications[["year", "month", "day"]].apply(pd.to_numeric, errors="coerce")
    dates = pd.to_datetime(parts, errors="coerce", utc=True)
    invalid = dates.isna().to_numpy()
    outside = ~invalid & ((dates < min_date) | (dates > max_date)).to_numpy()

    for reason, mask in ((INVALID_TAG_DATE, invalid), (TAG_DATE_OUT_OF_RANGE, outside)):
        count = int(mask.sum())
        drops[reason] = count
        if count == 0:
            continue
        first = applications.loc[mask].iloc[0]
        example = f"user {first['userID']}, {first['year']}-{first['month']}-{first['day']}"
        if strict:
            raise DataValidationError(
                f"user_taggedartists.dat has {count} tag applications with "
                f"{reason.replace('_', ' ')} (first: {example}); widen "
                f"tag_min_date/tag_max_date or pass strict=False to drop them")
        logger.warning("dropping %d tag applications: %s (first: %s)", count, reason,
                       example)

    keep = ~(invalid | outside)
    applications = applications.loc[keep].copy()
    applications["timestamp"] = dates[keep]
    return applications.reset_index(drop=True)


def _artist_items(artists: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": f"{ARTIST}:" + artists["id"],
        "item_type": ARTIST,
        "title": artists["name"],
        "tags": None,
    })


def _tag_items(tags: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": f"{TAG}:" + tags["tagID"],
        "item_type": TAG,
        "title": tags["tagValue"],
    })


def _listen_interactions(listens: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": listens["userID"],
        "item_id": f"{ARTIST}:" + listens["artistID"],
        "timestamp": pd.Series(pd.NaT, index=listens.index, dtype="datetime64[us, UTC]"),
        "weight": pd.to_numeric(listens["weight"]).astype(np.float32),
        "event_type": LISTEN,
    })


def _tag_interactions(applications: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": applications["userID"],
        "item_id": f"{TAG}:" + applications["tagID"],
        "timestamp": applications["timestamp"],
        "weight": np.float32(1.0),
        "event_type": TAG,
    })


def _tag_applications(applications: pd.DataFrame) -> pd.DataFrame:
    # The first three columns repeat the tag interaction's, so a split's rows
    # find their applications by (user_id, item_id, timestamp).
    return pd.DataFrame({
        "user_id": applications["userID"],
        "item_id": f"{TAG}:" + applications["tagID"],
        "timestamp": applications["timestamp"].astype("datetime64[us, UTC]"),
        "tagged_item_id": f"{ARTIST}:" + applications["artistID"],
    })
