"""Loader of MovieLens 1M (GroupLens) into the data contract.

Files are ``::``-separated: ``ratings.dat`` (UserID, MovieID, Rating,
Timestamp in Unix seconds), ``movies.dat`` (MovieID, Title with the year in
brackets, Genres joined by ``|``) and ``users.dat`` (UserID, Gender, Age,
Occupation, Zip-code). The official archive ships ``movies.dat`` in
ISO-8859-1, and UTF-8 copies circulate, so both are accepted.
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
from gfm.data.validate import validate_dataset

logger = logging.getLogger(__name__)

NAME = "movielens-1m"
ITEM_TYPE = "movie"
EVENT_TYPE = "rating"

SPEC = ArchiveSpec(
    name="ml-1m",
    url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    url_env="GFM_MOVIELENS_1M_URL",
    line_counts={"ratings.dat": 1_000_209, "movies.dat": 3_883, "users.dat": 6_040},
    # ratings.dat is ASCII, so its bytes are the same in every copy.
    git_blob_ids={"ratings.dat": "77a7c4b150f588c23bb9e1f068aa996c0b413695"},
)

# "Title (1995)": the year is the last bracketed four digits.
_TITLE_YEAR = r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$"


def decode_text(data: bytes) -> str:
    """Decode UTF-8, falling back to ISO-8859-1 (which accepts any bytes)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("iso-8859-1")


def read_double_colon(data: bytes, names: list[str],
                      dtype: dict[str, object]) -> pd.DataFrame:
    """Parse ``::``-separated bytes with pandas' C parser.

    ``sep="::"`` forces pandas onto its slow python engine, so the separator
    is rewritten to a tab first (no MovieLens field contains a tab).
    """
    text = decode_text(data).replace("::", "\t")
    return pd.read_csv(io.StringIO(text), sep="\t", header=None, names=names,
                       dtype=dtype, quoting=csv.QUOTE_NONE, keep_default_na=False,
                       engine="c")


def load_movielens_1m(data_dir: str | os.PathLike | None = None, *,
                      strict: bool = False) -> Dataset:
    """Load MovieLens 1M as one ``movie`` item type with ``rating`` events.

    Items are every listed movie (3,883), rated or not: ``item_id`` is
    ``movie:<MovieID>``, ``title`` the title without its year,
    ``release_year`` that year and ``genres`` the genre list. Each rating is
    an interaction with ``weight`` = the rating (1-5). Users get ``gender``,
    ``age`` (the dataset's age-group code) and ``occupation`` (its
    occupation code) as categorical strings. The zip code is left out
    because it identifies small areas rather than tastes.

    Args:
        data_dir: Folder containing ``ml-1m/``; defaults to ``GFM_DATA_DIR``.
            The official archive is downloaded when the files are absent.
        strict: Raise on any row that validation would drop.

    Returns:
        The validated dataset.
    """
    started = time.monotonic()
    folder = ensure_files(SPEC, data_dir)
    ratings = _read_ratings(folder / "ratings.dat")
    items, movies_without_year = _read_movies(folder / "movies.dat")
    users = _read_users(folder / "users.dat")

    items, interactions, users, report = validate_dataset(
        items, ratings, users, strict=strict, require_timestamps=True)
    report["source"] = {
        "dataset": NAME,
        "url": SPEC.resolved_url(),
        "movies_without_year": movies_without_year,
    }
    logger.info("loaded %s: %d items, %d interactions, %d users in %.1f s", NAME,
                len(items), len(interactions), len(users), time.monotonic() - started)
    return Dataset(name=NAME, items=items, interactions=interactions, users=users,
                   report=report)


def _read_ratings(path: Path) -> pd.DataFrame:
    raw = read_double_colon(
        path.read_bytes(), ["user_id", "movie_id", "rating", "seconds"],
        {"user_id": str, "movie_id": str, "rating": np.float32, "seconds": np.int64})
    return pd.DataFrame({
        "user_id": raw["user_id"],
        "item_id": f"{ITEM_TYPE}:" + raw["movie_id"],
        "timestamp": pd.to_datetime(raw["seconds"], unit="s", utc=True),
        "weight": raw["rating"],
        "event_type": EVENT_TYPE,
    })


def _read_movies(path: Path) -> tuple[pd.DataFrame, int]:
    raw = read_double_colon(path.read_bytes(), ["movie_id", "title", "genres"],
                            {"movie_id": str, "title": str, "genres": str})
    parts = raw["title"].str.extract(_TITLE_YEAR)
    has_year = parts["year"].notna()
    if not has_year.all():
        logger.warning("%d MovieLens titles have no (year), for example %r",
                       int((~has_year).sum()), raw.loc[~has_year, "title"].iloc[0])
    items = pd.DataFrame({
        "item_id": f"{ITEM_TYPE}:" + raw["movie_id"],
        "item_type": ITEM_TYPE,
        "title": parts["title"].where(has_year, raw["title"]),
        "genres": [value.split("|") if value else None for value in raw["genres"]],
        "release_year": pd.to_numeric(parts["year"]).astype(pd.Int32Dtype()),
    })
    return items, int((~has_year).sum())


def _read_users(path: Path) -> pd.DataFrame:
    return read_double_colon(
        path.read_bytes(), ["user_id", "gender", "age", "occupation", "zip_code"],
        dict.fromkeys(["user_id", "gender", "age", "occupation", "zip_code"], str),
    ).drop(columns="zip_code")
