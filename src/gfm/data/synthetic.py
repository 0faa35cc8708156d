"""Synthetic datasets with taste clusters and power-law popularity.

Each user and each item belongs to one of ``num_clusters`` taste clusters.
An interaction picks a user, whose activity follows a power law with
exponent ``user_activity_exponent``, and an item type in proportion to the
catalog sizes. The item then comes from the user's cluster with probability
``cluster_affinity`` and from the whole type otherwise. Both draws follow a
Zipf popularity with exponent ``zipf_exponent`` over a random item ranking.
Timestamps are uniform over ``[start_date, end_date)``, weights are 1.0,
and within each chunk the rows are grouped by user. Items get titles,
genres, tags and descriptions from word lists, with genres and tags tied to
the item's cluster, so text features carry signal.

:func:`generate_dataset` builds the tables in memory; :func:`write_synthetic`
streams the interactions as Parquet row groups of ``chunk_rows`` rows, so
memory stays bounded by the catalog and one chunk. Both draw the
interactions chunk by chunk from one seed, so equal settings and equal
``chunk_rows`` give equal data.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gfm import storage
from gfm.data import dataset as dataset_files
from gfm.data.config import settings_from_dict
from gfm.data.dataset import Dataset
from gfm.data.schema import (
    INTERACTIONS_SCHEMA,
    ITEMS,
    USERS,
    frame_to_table,
    table_to_frame,
)

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 1_000_000
EVENT_TYPE = "interaction"

_ADJECTIVES = (
    "Amber", "Bitter", "Blue", "Broken", "Bright", "Cold", "Crimson", "Dark", "Distant",
    "Electric", "Empty", "Final", "Golden", "Hidden", "Hollow", "Iron", "Last", "Lost",
    "Midnight", "Quiet", "Restless", "Silent", "Silver", "Slow", "Strange", "Velvet",
    "Wild", "Winter",
)
_NOUNS = (
    "Atlas", "Bridge", "Canyon", "City", "Coast", "Dream", "Echo", "Empire", "Field",
    "Fire", "Garden", "Harbor", "Horizon", "Island", "Letter", "Machine", "Mirror",
    "Mountain", "Ocean", "Orchard", "River", "Road", "Signal", "Storm", "Summer",
    "Tower", "Valley", "Voyage",
)
_GENRES = (
    "ambient", "biography", "blues", "comedy", "crime", "documentary", "drama",
    "electronic", "fantasy", "folk", "hip hop", "history", "horror", "jazz", "metal",
    "mystery", "news", "pop", "romance", "rock", "science", "soul", "sports", "thriller",
)
_TAGS = (
    "calm", "dark", "energetic", "epic", "funny", "gritty", "happy", "intense",
    "melancholic", "nostalgic", "playful", "relaxing", "romantic", "sad", "smart",
    "tense", "uplifting", "weird",
)
_FIRST_NAMES = ("Ada", "Bo", "Cleo", "Dev", "Elin", "Femi", "Gus", "Hana", "Ivo", "Juno",
                "Kai", "Lea", "Milo", "Nia", "Omar", "Pia")
_LAST_NAMES = ("Berg", "Costa", "Diaz", "Eriksson", "Fox", "Grant", "Hale", "Ito",
               "Jensen", "Khan", "Lind", "Moreau", "Novak", "Okafor", "Park", "Quinn")
_LANGUAGES = ("en", "en", "en", "es", "de", "fr", "sv", "pt")
_COUNTRIES = ("BR", "DE", "ES", "FR", "GB", "IN", "JP", "MX", "SE", "US")
_AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55+")


@dataclass
class SyntheticConfig:
    """Settings of the synthetic generator.

    Attributes:
        num_users: Number of users.
        items_per_type: Item type -> number of items of that type.
        num_interactions: Number of interaction rows.
        num_clusters: Number of user taste clusters (items share them).
        zipf_exponent: Exponent ``s`` of the item popularity ``1 / rank^s``.
        user_activity_exponent: Same for user activity; 0 makes it uniform.
        cluster_affinity: Share of interactions drawn from the user's cluster.
        seed: Seed of every random draw.
        start_date: First day of the interactions (ISO 8601, UTC).
        end_date: Day after the last interaction (ISO 8601, UTC).
        name: Dataset name.
    """

    num_users: int = 1_000
    items_per_type: dict[str, int] = field(
        default_factory=lambda: {"movie": 500, "podcast": 200})
    num_interactions: int = 50_000
    num_clusters: int = 8
    zipf_exponent: float = 1.0
    user_activity_exponent: float = 0.5
    cluster_affinity: float = 0.8
    seed: int = 0
    start_date: str = "2024-01-01"
    end_date: str = "2024-04-01"
    name: str = "synthetic"

    def __post_init__(self) -> None:
        if not self.items_per_type:
            raise ValueError("items_per_type is empty; give at least one item type, "
                             "for example {'movie': 500}")
        for item_type, count in self.items_per_type.items():
            if not isinstance(item_type, str) or not item_type or ":" in item_type:
                raise ValueError(f"item type {item_type!r} is invalid: use a non-empty "
                                 f"name without ':'")
            if not isinstance(count, int) or count < 1:
                raise ValueError(f"items_per_type[{item_type!r}] must be a positive "
                                 f"integer, got {count!r}")
        for name in ("num_users", "num_interactions", "num_clusters"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.zipf_exponent < 0 or self.user_activity_exponent < 0:
            raise ValueError(f"exponents must be >= 0, got zipf_exponent "
                             f"{self.zipf_exponent} and user_activity_exponent "
                             f"{self.user_activity_exponent}")
        if not 0 <= self.cluster_affinity <= 1:
            raise ValueError(f"cluster_affinity must be in [0, 1], got "
                             f"{self.cluster_affinity}")
        if self.start_timestamp() >= self.end_timestamp():
            raise ValueError(f"start_date {self.start_date} must be before end_date "
                             f"{self.end_date}")

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any] | None) -> SyntheticConfig:
        """Build the settings from a mapping; missing keys keep their defaults.

        Raises:
            ValueError: naming any unknown key or invalid value.
        """
        return settings_from_dict(cls, mapping, "synthetic settings")

    def start_timestamp(self) -> pd.Timestamp:
        """Return ``start_date`` as a UTC timestamp."""
        return pd.Timestamp(self.start_date, tz="UTC")

    def end_timestamp(self) -> pd.Timestamp:
        """Return ``end_date`` as a UTC timestamp."""
        return pd.Timestamp(self.end_date, tz="UTC")


@dataclass
class _Catalog:
    """Items, users and the sampling tables of one config.

    Sampling works by one ``searchsorted`` per chunk. For a draw from the
    whole of type ``t``, ``type_cdf`` contains ``t + CDF`` of each type's
    popularity, in item row order, so ``t + u`` (``u`` uniform in [0, 1))
    lands inside type ``t``. For a draw within cluster ``c``, segment
    ``t * num_clusters + c`` contains that type's items of cluster ``c`` the
    same way in ``segment_cdf``, with their item rows in ``segment_rows``.
    """

    items: pd.DataFrame
    item_ids: pa.Array              # [num_items]
    item_types: np.ndarray          # [num_items] type index of each row
    type_probabilities: np.ndarray  # [num_types]
    type_cdf: np.ndarray            # [num_items]
    segment_cdf: np.ndarray         # [num_items]
    segment_rows: np.ndarray        # [num_items]
    segment_sizes: np.ndarray       # [num_types * num_clusters]
    user_ids: pa.Array              # [num_users]
    user_clusters: np.ndarray       # [num_users]
    user_cdf: np.ndarray            # [num_users]


def generate_dataset(config: SyntheticConfig) -> Dataset:
    """Generate a whole dataset in memory.

    Args:
        config: The generator settings. A few million interactions fit in
            memory; use :func:`write_synthetic` beyond that.

    Returns:
        The dataset, equal to what :func:`write_synthetic` writes with the
        default ``chunk_rows``.
    """
    started = time.monotonic()
    catalog = _build_catalog(config)
    tally = _Tally(catalog)
    tables = []
    for chunk in _interaction_chunks(config, catalog, DEFAULT_CHUNK_ROWS):
        tally.add(chunk)
        tables.append(chunk.table)
    interactions = table_to_frame(pa.concat_tables(tables))
    users = _users_table(config, catalog)
    report = _report(config, catalog, tally)
    logger.info("generated %s: %d items, %d interactions in %.1f s", config.name,
                len(catalog.items), len(interactions), time.monotonic() - started)
    return Dataset(name=config.name, items=catalog.items, interactions=interactions,
                   users=users, report=report)


def write_synthetic(config: SyntheticConfig, out_uri: str | os.PathLike, *,
                    chunk_rows: int = DEFAULT_CHUNK_ROWS) -> dict[str, Any]:
    """Write a synthetic dataset folder, streaming the interactions.

    The folder has the Dataset layout (``items.parquet``,
    ``interactions.parquet``, ``users.parquet``, ``report.json``), so
    :meth:`Dataset.load` reads it back. ``interactions.parquet`` gets one row
    group per chunk.

    Args:
        config: The generator settings.
        out_uri: Output folder, local or ``gs://``.
        chunk_rows: Interactions per chunk and row group.

    Returns:
        The dataset report plus ``generation``: interactions, chunk rows,
        seconds (catalog and interactions, as written), rows per second and
        the bytes of ``interactions.parquet``.

    Raises:
        ValueError: if ``chunk_rows`` is not positive.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    started = time.monotonic()
    catalog = _build_catalog(config)
    tally = _Tally(catalog)
    target = storage.join(out_uri, dataset_files.INTERACTIONS_FILE)
    with storage.staged_write(target) as path:
        with pq.ParquetWriter(path, INTERACTIONS_SCHEMA, compression="zstd") as writer:
            for chunk in _interaction_chunks(config, catalog, chunk_rows):
                writer.write_table(chunk.table, row_group_size=chunk_rows)
                tally.add(chunk)
                logger.debug("wrote %d of %d interactions", tally.rows,
                             config.num_interactions)
        parquet_bytes = path.stat().st_size
    seconds = time.monotonic() - started

    storage.write_table(frame_to_table(catalog.items, ITEMS),
                        storage.join(out_uri, dataset_files.ITEMS_FILE))
    storage.write_table(frame_to_table(_users_table(config, catalog), USERS),
                        storage.join(out_uri, dataset_files.USERS_FILE))
    report = _report(config, catalog, tally)
    report["generation"] = {
        "interactions": tally.rows, "chunk_rows": chunk_rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(tally.rows / seconds) if seconds > 0 else None,
        "interactions_parquet_bytes": parquet_bytes,
    }
    storage.write_json(storage.join(out_uri, dataset_files.REPORT_FILE),
                       dict(report, name=config.name))
    logger.info("wrote %s to %s: %d interactions in %.1f s (%.0f rows/s)", config.name,
                out_uri, tally.rows, seconds, tally.rows / max(seconds, 1e-9))
    return report


# Catalog ------------------------------------------------------------------


def _zipf_weights(count: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``1 / rank^exponent`` for a random ranking of ``count`` entities."""
    ranks = rng.permutation(count) + 1
    return ranks.astype(np.float64) ** -exponent


def _normalized_cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _build_catalog(config: SyntheticConfig) -> _Catalog:
    rng = np.random.default_rng([config.seed, 0])
    # Each cluster has two signature genres and two signature tags, shared
    # by all item types.
    signatures = tuple(
        np.argsort(rng.random((config.num_clusters, len(words))), axis=1)[:, :2]
        for words in (_GENRES, _TAGS))
    frames, type_cdfs, segment_cdfs, segment_rows, segment_sizes = [], [], [], [], []
    offset = 0
    for type_index, (item_type, count) in enumerate(config.items_per_type.items()):
        clusters = rng.integers(0, config.num_clusters, count)
        popularity = _zipf_weights(count, config.zipf_exponent, rng)
        frames.append(_item_texts(item_type, clusters, signatures, rng))
        type_cdfs.append(type_index + _normalized_cdf(popularity))
        for cluster in range(config.num_clusters):
            rows = np.flatnonzero(clusters == cluster)
            segment_sizes.append(len(rows))
            if len(rows):
                segment = type_index * config.num_clusters + cluster
                segment_cdfs.append(segment + _normalized_cdf(popularity[rows]))
                segment_rows.append(offset + rows)
        offset += count
    items = pd.concat(frames, ignore_index=True)

    sizes = np.array(list(config.items_per_type.values()), dtype=np.float64)
    return _Catalog(
        items=items,
        item_ids=pa.array(items["item_id"], pa.string()),
        item_types=np.repeat(np.arange(len(sizes)), sizes.astype(np.int64)),
        type_probabilities=sizes / sizes.sum(),
        type_cdf=np.concatenate(type_cdfs),
        segment_cdf=np.concatenate(segment_cdfs),
        segment_rows=np.concatenate(segment_rows),
        segment_sizes=np.array(segment_sizes),
        user_ids=pa.array([f"user:{i}" for i in range(config.num_users)], pa.string()),
        user_clusters=rng.integers(0, config.num_clusters, config.num_users),
        user_cdf=_normalized_cdf(
            _zipf_weights(config.num_users, config.user_activity_exponent, rng)),
    )


def _item_texts(item_type: str, clusters: np.ndarray,
                signatures: tuple[np.ndarray, np.ndarray],
                rng: np.random.Generator) -> pd.DataFrame:
    count = len(clusters)
    cluster_genres, cluster_tags = signatures
    adjectives = rng.integers(0, len(_ADJECTIVES), count)
    nouns = rng.integers(0, len(_NOUNS), count)
    extra_genres = rng.integers(0, len(_GENRES), count)
    has_extra = rng.random(count) < 0.5
    extra_tags = rng.integers(0, len(_TAGS), count)
    first = rng.integers(0, len(_FIRST_NAMES), count)
    last = rng.integers(0, len(_LAST_NAMES), count)
    languages = rng.integers(0, len(_LANGUAGES), count)
    years = rng.integers(1970, 2025, count)

    genres, tags, titles, descriptions = [], [], [], []
    for row in range(count):
        signature = [_GENRES[g] for g in cluster_genres[clusters[row]]]
        if has_extra[row]:
            signature.append(_GENRES[extra_genres[row]])
        genres.append(list(dict.fromkeys(signature)))
        tags.append(list(dict.fromkeys([_TAGS[t] for t in cluster_tags[clusters[row]]]
                                       + [_TAGS[extra_tags[row]]])))
        titles.append(f"{_ADJECTIVES[adjectives[row]]} {_NOUNS[nouns[row]]}")
        descriptions.append(f"A {tags[row][0]} {item_type} of {genres[row][0]} and "
                            f"{genres[row][1] if len(genres[row]) > 1 else 'more'}.")
    return pd.DataFrame({
        "item_id": [f"{item_type}:{i}" for i in range(count)],
        "item_type": item_type,
        "title": titles,
        "description": descriptions,
        "genres": genres,
        "tags": tags,
        "creators": [[f"{_FIRST_NAMES[a]} {_LAST_NAMES[b]}"] for a, b in zip(first, last)],
        "language": [_LANGUAGES[i] for i in languages],
        "release_year": pd.array(years, dtype=pd.Int32Dtype()),
    })


def _users_table(config: SyntheticConfig, catalog: _Catalog) -> pd.DataFrame:
    rng = np.random.default_rng([config.seed, 1])
    # Country follows the taste cluster half of the time, so it is a weak signal.
    from_cluster = rng.random(config.num_users) < 0.5
    country = np.where(from_cluster, catalog.user_clusters % len(_COUNTRIES),
                       rng.integers(0, len(_COUNTRIES), config.num_users))
    return pd.DataFrame({
        "user_id": catalog.user_ids.to_pylist(),
        "country": [_COUNTRIES[i] for i in country],
        "age_group": [_AGE_GROUPS[i] for i in rng.integers(0, len(_AGE_GROUPS),
                                                           config.num_users)],
    })


# Interactions -------------------------------------------------------------


@dataclass
class _Chunk:
    """One chunk of interactions as an Arrow table and its index arrays."""

    table: pa.Table
    users: np.ndarray   # [rows] user rows
    items: np.ndarray   # [rows] item rows
    times: np.ndarray   # [rows] microseconds since the epoch


def _interaction_chunks(config: SyntheticConfig, catalog: _Catalog, chunk_rows: int
                        ) -> Iterator[_Chunk]:
    start_us = config.start_timestamp().value // 1_000
    span_us = config.end_timestamp().value // 1_000 - start_us
    event_types = pa.array([EVENT_TYPE], pa.string())
    for index, first in enumerate(range(0, config.num_interactions, chunk_rows)):
        rows = min(chunk_rows, config.num_interactions - first)
        rng = np.random.default_rng([config.seed, 2, index])
        # Sorted uniforms make searchsorted walk the CDF in order, several
        # times faster than random probes; rows come out grouped by user.
        users = np.searchsorted(catalog.user_cdf, np.sort(rng.random(rows)), side="right")
        items = _draw_items(config, catalog, catalog.user_clusters[users], rng)
        times = start_us + rng.integers(0, span_us, rows)
        table = pa.table({
            "user_id": catalog.user_ids.take(pa.array(users)),
            "item_id": catalog.item_ids.take(pa.array(items)),
            "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            "weight": pa.array(np.ones(rows, np.float32)),
            "event_type": event_types.take(pa.array(np.zeros(rows, np.int64))),
        }, schema=INTERACTIONS_SCHEMA)
        yield _Chunk(table=table, users=users, items=items, times=times)


def _draw_items(config: SyntheticConfig, catalog: _Catalog, user_clusters: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Draw one item per interaction; returns ``[rows]`` item rows."""
    rows = len(user_clusters)
    types = rng.choice(len(catalog.type_probabilities), size=rows,
                       p=catalog.type_probabilities)
    uniforms = rng.random(rows)
    segments = types * config.num_clusters + user_clusters
    # A cluster without items of the drawn type falls back to the whole type.
    in_cluster = (rng.random(rows) < config.cluster_affinity) & (
        catalog.segment_sizes[segments] > 0)

    result = np.empty(rows, dtype=np.int64)
    chosen = np.flatnonzero(in_cluster)
    positions = _search(catalog.segment_cdf, segments[chosen] + uniforms[chosen])
    result[chosen] = catalog.segment_rows[positions]
    chosen = np.flatnonzero(~in_cluster)
    result[chosen] = _search(catalog.type_cdf, types[chosen] + uniforms[chosen])
    return result


def _search(cdf: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``np.searchsorted(cdf, queries, side="right")``, probing in sorted order."""
    order = np.argsort(queries)
    found = np.empty(len(queries), dtype=np.int64)
    found[order] = np.searchsorted(cdf, queries[order], side="right")
    return found


class _Tally:
    """Counts of the report, gathered chunk by chunk."""

    def __init__(self, catalog: _Catalog) -> None:
        self.rows = 0
        self.users_seen = np.zeros(len(catalog.user_ids), bool)
        self.item_counts = np.zeros(len(catalog.item_ids), np.int64)
        self.timestamp_min: int | None = None
        self.timestamp_max: int | None = None

    def add(self, chunk: _Chunk) -> None:
        self.rows += len(chunk.users)
        self.users_seen[chunk.users] = True
        self.item_counts += np.bincount(chunk.items, minlength=len(self.item_counts))
        low, high = int(chunk.times.min()), int(chunk.times.max())
        self.timestamp_min = low if self.timestamp_min is None else min(self.timestamp_min, low)
        self.timestamp_max = high if self.timestamp_max is None else max(self.timestamp_max, high)


def _iso(microseconds: int | None) -> str | None:
    if microseconds is None:
        return None
    return pd.Timestamp(microseconds, unit="us", tz="UTC").isoformat()


def _report(config: SyntheticConfig, catalog: _Catalog, tally: _Tally) -> dict[str, Any]:
    type_names = list(config.items_per_type)
    per_type = np.bincount(catalog.item_types, weights=tally.item_counts,
                           minlength=len(type_names))
    items_by_type = catalog.items["item_type"].value_counts()
    rows = {"items": len(catalog.items), "interactions": tally.rows,
            "users": config.num_users}
    return {
        "rows_in": rows,
        "rows_out": dict(rows),
        "dropped": {"interactions": {}},
        "counts": {
            "items_by_type": {name: int(items_by_type[name]) for name in sorted(type_names)},
            "interactions_by_event_type": {EVENT_TYPE: tally.rows},
            "interactions_by_item_type": {name: int(per_type[i]) for i, name in
                                          sorted(enumerate(type_names), key=lambda p: p[1])},
            "users_in_interactions": int(tally.users_seen.sum()),
            "items_with_interactions": int((tally.item_counts > 0).sum()),
            "interactions_with_timestamp": tally.rows,
            "timestamp_min": _iso(tally.timestamp_min),
            "timestamp_max": _iso(tally.timestamp_max),
            "users": config.num_users,
        },
        "source": {"dataset": config.name, "generator": "gfm.data.synthetic",
                   "config": dataclasses.asdict(config)},
    }
