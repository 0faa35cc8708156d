"""Train, validation and test splits of interactions, with optional cold items.

Protocols, applied per event type by :func:`split_dataset`:

* ``temporal``: one global cutoff. With ``end`` the latest timestamp, test
  is ``(end - test_days, end]``, validation the ``valid_days`` before it and
  training the ``window_days`` window before that. Older rows are dropped
  and counted as ``outside_window``, unless ``window_days`` is None.
  The defaults keep a 90-day window and hold out the last 14 days. With
  ``temporal_cutoff="fraction"`` the cutoffs are instead the time quantiles
  that leave the last ``test_fraction`` of events for test and the
  ``valid_fraction`` before them for validation, for data whose events are
  spread unevenly over years (MovieLens-1M has most ratings in 2000).
* ``leave_last_n``: per user, the last ``n_test`` events are test and the
  ``n_valid`` before them validation; users with too few events stay
  wholly in training.
* ``random``: a seeded shuffle, for events without time (Last.fm listens).
* ``auto``: ``temporal`` for an event type whose rows all have a
  timestamp, ``random`` otherwise.

Validation is always carved out of what would otherwise be training. The
optional cold-item split (:func:`cold_item_split`) picks a seeded share of
the items and removes all their training and validation interactions, so
they reach evaluation unseen.

On storage a :class:`Split` is a folder with ``train.parquet``,
``valid.parquet``, ``test.parquet`` (interactions tables),
``cold_items.parquet`` (``item_id``) and ``split.json`` (the report).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from gfm import storage
from gfm.data.config import settings_from_dict
from gfm.data.dataset import Dataset
from gfm.data.schema import INTERACTIONS, frame_to_table, table_to_frame

logger = logging.getLogger(__name__)

PROTOCOLS = ("auto", "temporal", "leave_last_n", "random")
PARTS = ("train", "valid", "test")
TEMPORAL_CUTOFFS = ("days", "fraction")
COLD_ITEMS_FILE = "cold_items.parquet"
REPORT_FILE = "split.json"


@dataclass
class SplitConfig:
    """Settings of :func:`split_dataset`.

    Attributes:
        protocol: Protocol of event types not named in ``protocols``: one
            of ``auto``, ``temporal``, ``leave_last_n``, ``random``.
        protocols: Event type -> protocol, for example
            ``{"listen": "random", "tag": "temporal"}``.
        test_days: Temporal: length of the test period, in days.
        valid_days: Temporal: length of the validation period before it.
        window_days: Temporal: training window before validation, in days;
            None keeps all older events.
        temporal_cutoff: Temporal: ``days`` places the cutoffs by
            ``test_days`` and ``valid_days``; ``fraction`` places them at the
            time quantiles given by ``test_fraction`` and ``valid_fraction``.
        n_test: Leave-last-n: test events per user.
        n_valid: Leave-last-n: validation events per user.
        test_fraction: Random, or temporal by fraction: share of rows for
            test.
        valid_fraction: Random, or temporal by fraction: share of rows for
            validation.
        cold_item_fraction: Share of the items with interactions held out
            of train and valid (0 disables the cold-item split).
        cold_item_types: Item types eligible as cold items; None means all.
        seed: Seed of the random and cold-item draws.
    """

    protocol: str = "auto"
    protocols: dict[str, str] = field(default_factory=dict)
    test_days: float = 14.0
    valid_days: float = 14.0
    window_days: float | None = 90.0
    temporal_cutoff: str = "days"
    n_test: int = 1
    n_valid: int = 1
    test_fraction: float = 0.1
    valid_fraction: float = 0.1
    cold_item_fraction: float = 0.0
    cold_item_types: list[str] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for event_type, protocol in {"(default)": self.protocol, **self.protocols}.items():
            if protocol not in PROTOCOLS:
                raise ValueError(f"unknown split protocol {protocol!r} for event type "
                                 f"{event_type}; expected one of {list(PROTOCOLS)}")
        if self.test_days <= 0 or self.valid_days < 0:
            raise ValueError(f"test_days must be > 0 and valid_days >= 0, got "
                             f"{self.test_days} and {self.valid_days}")
        if self.temporal_cutoff not in TEMPORAL_CUTOFFS:
            raise ValueError(f"unknown temporal_cutoff {self.temporal_cutoff!r}; "
                             f"expected one of {list(TEMPORAL_CUTOFFS)}")
        if self.window_days is not None and self.window_days <= 0:
            raise ValueError(f"window_days must be > 0 or null, got {self.window_days}")
        if self.n_test < 1 or self.n_valid < 0:
            raise ValueError(f"n_test must be >= 1 and n_valid >= 0, got {self.n_test} "
                             f"and {self.n_valid}")
        if not (0 < self.test_fraction < 1 and 0 <= self.valid_fraction < 1
                and self.test_fraction + self.valid_fraction < 1):
            raise ValueError(f"test_fraction {self.test_fraction} and valid_fraction "
                             f"{self.valid_fraction} must be shares that leave rows "
                             f"for training")
        if not 0 <= self.cold_item_fraction < 1:
            raise ValueError(f"cold_item_fraction must be in [0, 1), got "
                             f"{self.cold_item_fraction}")

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any] | None) -> SplitConfig:
        """Build the settings from a mapping; missing keys keep their defaults.

        Raises:
            ValueError: naming any unknown key or invalid value.
        """
        return settings_from_dict(cls, mapping, "split settings")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass
class Split:
    """Interactions split into parts, the held-out cold items and a report.

    Attributes:
        train: Training interactions.
        valid: Validation interactions, carved from training.
        test: Test interactions.
        cold_items: Item ids without train or valid interactions by design.
        report: Protocol, settings, seed and counts per part.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    cold_items: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    def save(self, uri: str | os.PathLike) -> None:
        """Write the split folder at ``uri``."""
        for part in PARTS:
            storage.write_table(frame_to_table(getattr(self, part), INTERACTIONS),
                                storage.join(uri, f"{part}.parquet"))
        cold = pa.table({"item_id": pa.array(self.cold_items, pa.string())})
        storage.write_table(cold, storage.join(uri, COLD_ITEMS_FILE))
        storage.write_json(storage.join(uri, REPORT_FILE), self.report)
        logger.info("saved split (%s) to %s", _part_sizes(self), uri)

    @classmethod
    def load(cls, uri: str | os.PathLike) -> Split:
        """Read a split folder written by :meth:`save`."""
        parts = {part: table_to_frame(storage.read_table(storage.join(uri, f"{part}.parquet")))
                 for part in PARTS}
        cold = storage.read_table(storage.join(uri, COLD_ITEMS_FILE)).column("item_id")
        return cls(cold_items=cold.to_pylist(),
                   report=storage.read_json(storage.join(uri, REPORT_FILE)), **parts)


def _part_sizes(split: Split) -> str:
    return ", ".join(f"{part} {len(getattr(split, part))}" for part in PARTS)


def _make_split(interactions: pd.DataFrame, part: np.ndarray, protocol: str,
                settings: dict[str, Any], extra: dict[str, Any]) -> Split:
    # part is 0/1/2 for train/valid/test and -1 for dropped rows.
    frames = {name: interactions.loc[part == code].reset_index(drop=True)
              for code, name in enumerate(PARTS)}
    report = {
        "protocol": protocol,
        "settings": settings,
        "counts": {name: len(frame) for name, frame in frames.items()},
        **extra,
    }
    return Split(cold_items=[], report=report, **frames)


def _require_timestamps(interactions: pd.DataFrame, protocol: str) -> None:
    missing = int(interactions["timestamp"].isna().sum())
    if missing:
        raise ValueError(f"the {protocol} split needs timestamps, but {missing} of "
                         f"{len(interactions)} interactions have none; use the random "
                         f"protocol for them")


def temporal_split(interactions: pd.DataFrame, *, test_days: float = 14.0,
                   valid_days: float = 14.0, window_days: float | None = 90.0,
                   end: pd.Timestamp | None = None,
                   test_fraction: float | None = None,
                   valid_fraction: float = 0.0) -> Split:
    """Split at global time cutoffs measured back from ``end``.

    Args:
        interactions: Contract interactions, every row with a timestamp.
        test_days: Test period ``(end - test_days, end]``, in days.
        valid_days: Validation period just before the test period, in days.
        window_days: Training period before validation, in days; older rows
            are dropped (counted as ``outside_window``). None keeps them.
        end: End of the test period; defaults to the latest timestamp.
        test_fraction: When set, the test period starts at the time quantile
            ``1 - test_fraction`` of the events instead of ``test_days``
            before ``end``.
        valid_fraction: With ``test_fraction``: the validation period starts
            at the quantile ``1 - test_fraction - valid_fraction``.

    Returns:
        The split, whose report has the cutoffs as ISO 8601 strings.

    Raises:
        ValueError: if a timestamp is missing.
    """
    _require_timestamps(interactions, "temporal")
    timestamps = interactions["timestamp"]
    end = timestamps.max() if end is None else pd.Timestamp(end)
    if test_fraction is None:
        test_start = end - pd.Timedelta(days=test_days)
        valid_start = test_start - pd.Timedelta(days=valid_days)
    else:
        # Quantiles of the event times: ties at a cutoff all fall on the
        # earlier side, so the shares are at most the requested ones.
        ordered = timestamps.sort_values(ignore_index=True)
        test_start = ordered.iloc[_quantile_row(len(ordered), 1 - test_fraction)]
        valid_start = ordered.iloc[_quantile_row(
            len(ordered), 1 - test_fraction - valid_fraction)]
    train_start = None if window_days is None else valid_start - pd.Timedelta(
        days=window_days)

    part = np.zeros(len(interactions), dtype=np.int8)
    part[(timestamps > valid_start).to_numpy()] = 1
    part[(timestamps > test_start).to_numpy()] = 2
    # Rows after end belong to no period; they only occur with an explicit end.
    outside = (timestamps > end).to_numpy()
    if train_start is not None:
        outside |= (timestamps <= train_start).to_numpy()
    part[outside] = -1

    cutoffs = {"end": end.isoformat(), "test_start": test_start.isoformat(),
               "valid_start": valid_start.isoformat(),
               "train_start": None if train_start is None else train_start.isoformat()}
    settings = {"test_days": test_days, "valid_days": valid_days,
                "window_days": window_days, "test_fraction": test_fraction,
                "valid_fraction": valid_fraction if test_fraction is not None else None}
    return _make_split(interactions, part, "temporal", settings,
                       {"cutoffs": cutoffs, "dropped": {"outside_window": int(outside.sum())}})


def _quantile_row(rows: int, share: float) -> int:
    return min(rows - 1, max(0, int(np.ceil(rows * share)) - 1))


def leave_last_n_split(interactions: pd.DataFrame, *, n_test: int = 1,
                       n_valid: int = 1) -> Split:
    """Hold out each user's last events by time.

    Ties in time keep the input order. Users with at most ``n_test +
    n_valid`` events keep all of them in training (counted as
    ``users_kept_in_train``), so every evaluated user has a history.

    Args:
        interactions: Contract interactions, every row with a timestamp.
        n_test: Last events per user that go to test.
        n_valid: Events before those that go to validation.

    Returns:
        The split.

    Raises:
        ValueError: if a timestamp is missing.
    """
    _require_timestamps(interactions, "leave_last_n")
    user_codes, _ = pd.factorize(interactions["user_id"])
    times = interactions["timestamp"].dt.tz_convert(None).to_numpy()
    # lexsort's last key is the primary one: user, then time, then row.
    order = np.lexsort((np.arange(len(interactions)), times, user_codes))
    users = user_codes[order]
    grouped = pd.Series(users).groupby(users, sort=False)
    from_end = grouped.cumcount(ascending=False).to_numpy()
    sizes = grouped.transform("size").to_numpy()

    part_sorted = np.zeros(len(order), dtype=np.int8)
    part_sorted[from_end < n_test + n_valid] = 1
    part_sorted[from_end < n_test] = 2
    too_few = sizes <= n_test + n_valid
    part_sorted[too_few] = 0
    part = np.empty_like(part_sorted)
    part[order] = part_sorted

    kept = int(pd.unique(users[too_few]).size)
    return _make_split(interactions, part, "leave_last_n",
                       {"n_test": n_test, "n_valid": n_valid},
                       {"users_kept_in_train": kept})


def random_split(interactions: pd.DataFrame, *, test_fraction: float = 0.1,
                 valid_fraction: float = 0.1, seed: int = 0) -> Split:
    """Assign rows to parts by a seeded permutation.

    Args:
        interactions: Contract interactions; timestamps are not used.
        test_fraction: Share of rows for test (rounded to whole rows).
        valid_fraction: Share of rows for validation.
        seed: Seed of ``numpy.random.default_rng``.

    Returns:
        The split.
    """
    rows = len(interactions)
    num_test = round(rows * test_fraction)
    num_valid = round(rows * valid_fraction)
    permutation = np.random.default_rng(seed).permutation(rows)
    part = np.zeros(rows, dtype=np.int8)
    part[permutation[:num_test]] = 2
    part[permutation[num_test:num_test + num_valid]] = 1
    return _make_split(interactions, part, "random",
                       {"test_fraction": test_fraction,
                        "valid_fraction": valid_fraction, "seed": seed}, {})


def cold_item_split(split: Split, items: pd.DataFrame, *, fraction: float,
                    seed: int = 0, item_types: list[str] | None = None) -> Split:
    """Hold a seeded share of items out of train and valid.

    The candidates are the items of ``item_types`` with at least one
    interaction in any part. Their train and valid interactions are removed
    (counted as ``cold_item`` per part); their test interactions stay.

    Args:
        split: The split to change.
        items: Contract items table, for the item types.
        fraction: Share of the candidates to hold out.
        seed: Seed of the draw.
        item_types: Eligible item types; None means all.

    Returns:
        A new split whose ``cold_items`` lists the held-out ids, sorted.
    """
    used = pd.concat([getattr(split, part)["item_id"] for part in PARTS]).unique()
    candidates = items.loc[items["item_id"].isin(used)]
    if item_types is not None:
        candidates = candidates.loc[candidates["item_type"].isin(item_types)]
    candidate_ids = np.sort(candidates["item_id"].to_numpy().astype(str))
    count = round(len(candidate_ids) * fraction)
    chosen = np.random.default_rng(seed).choice(candidate_ids, size=count, replace=False)
    cold = sorted(chosen.tolist())

    removed = {}
    parts = {"test": split.test}
    for part in ("train", "valid"):
        frame = getattr(split, part)
        is_cold = frame["item_id"].isin(cold)
        removed[part] = int(is_cold.sum())
        parts[part] = frame.loc[~is_cold].reset_index(drop=True)

    report = dict(split.report)
    report["cold_items"] = {"fraction": fraction, "seed": seed, "item_types": item_types,
                            "candidates": len(candidate_ids), "count": len(cold),
                            "removed_interactions": removed,
                            "test_interactions": int(parts["test"]["item_id"].isin(cold).sum())}
    report["counts"] = {part: len(frame) for part, frame in parts.items()}
    logger.info("held out %d of %d items as cold, removing %d train and %d valid "
                "interactions", len(cold), len(candidate_ids), removed["train"],
                removed["valid"])
    return Split(cold_items=cold, report=report, **parts)


def split_dataset(dataset: Dataset, config: SplitConfig | Mapping[str, Any] | None = None
                  ) -> Split:
    """Split a dataset's interactions with one protocol per event type.

    Temporal event types share one ``end``, the latest timestamp of the
    dataset, so their cutoffs are global. Parts keep the input row order
    within each event type.

    Args:
        dataset: The dataset to split.
        config: Settings or a mapping for :meth:`SplitConfig.from_dict`.

    Returns:
        The split. Its report has ``protocols`` (event type -> protocol),
        ``settings``, ``by_event_type`` (each protocol's report), ``counts``
        (rows, users and items per part), ``dropped`` (reason -> rows) and
        ``test_users_without_train``.
    """
    if not isinstance(config, SplitConfig):
        config = SplitConfig.from_dict(config)
    started = time.monotonic()
    interactions = dataset.interactions
    timed = interactions["timestamp"].dropna()
    end = timed.max() if len(timed) else None

    splits: dict[str, Split] = {}
    protocols: dict[str, str] = {}
    for event_type, events in interactions.groupby("event_type", sort=True):
        events = events.reset_index(drop=True)
        protocol = config.protocols.get(event_type, config.protocol)
        if protocol == "auto":
            protocol = "temporal" if events["timestamp"].notna().all() else "random"
        protocols[event_type] = protocol
        splits[event_type] = _split_events(events, protocol, config, end)
        logger.info("split %s events with %s: %s", event_type, protocol,
                    _part_sizes(splits[event_type]))

    parts = {part: pd.concat([getattr(s, part) for s in splits.values()],
                             ignore_index=True) for part in PARTS}
    dropped: dict[str, int] = {}
    for event_split in splits.values():
        for reason, count in event_split.report.get("dropped", {}).items():
            dropped[reason] = dropped.get(reason, 0) + count

    report = {"dataset": dataset.name, "protocols": protocols,
              "settings": config.to_dict(), "seed": config.seed,
              "by_event_type": {event: s.report for event, s in splits.items()},
              "dropped": dropped}
    split = Split(cold_items=[], report=report, **parts)
    if config.cold_item_fraction > 0:
        split = cold_item_split(split, dataset.items, fraction=config.cold_item_fraction,
                                seed=config.seed, item_types=config.cold_item_types)
        for part, count in split.report["cold_items"]["removed_interactions"].items():
            dropped[f"cold_item_{part}"] = count
    split.report["dropped"] = dropped
    split.report["counts"] = _counts(split)
    train_users = set(split.train["user_id"])
    split.report["test_users_without_train"] = int(
        (~pd.Series(split.test["user_id"].unique()).isin(train_users)).sum())
    logger.info("split %s in %.1f s: %s; dropped %s", dataset.name,
                time.monotonic() - started, _part_sizes(split), dropped)
    return split


def _split_events(events: pd.DataFrame, protocol: str, config: SplitConfig,
                  end: pd.Timestamp | None) -> Split:
    if protocol == "temporal":
        by_fraction = config.temporal_cutoff == "fraction"
        return temporal_split(events, test_days=config.test_days,
                              valid_days=config.valid_days,
                              window_days=config.window_days, end=end,
                              test_fraction=config.test_fraction if by_fraction else None,
                              valid_fraction=config.valid_fraction)
    if protocol == "leave_last_n":
        return leave_last_n_split(events, n_test=config.n_test, n_valid=config.n_valid)
    return random_split(events, test_fraction=config.test_fraction,
                        valid_fraction=config.valid_fraction, seed=config.seed)


def _counts(split: Split) -> dict[str, dict[str, int]]:
    return {part: {"interactions": len(frame), "users": int(frame["user_id"].nunique()),
                   "items": int(frame["item_id"].nunique())}
            for part, frame in ((p, getattr(split, p)) for p in PARTS)}
