"""Settings of the graph stage."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WINDOW_REFERENCES = ("global", "user")
UNTIMED_POLICIES = ("keep", "drop")
WEIGHTS = ("jaccard", "pmi")
TOP_K_MODES = ("union", "mutual")

# DuckDB size strings such as "4GB", "512MiB" or "0.5 TB".
_MEMORY_PATTERN = re.compile(r"^\s*(\d+(\.\d+)?)\s*([KMGT]i?B|B)\s*$", re.IGNORECASE)

# 100 years, longer than interaction logs span, so a longer window keeps the
# same rows as null. The bound also keeps the window in microseconds far
# inside the BIGINT range of DuckDB's timestamp arithmetic.
MAX_WINDOW_DAYS = 36_525

# The largest count setting: counts are SQL literals, and DuckDB fails with a
# conversion error once list positions derived from them pass 2^63. Use null
# in place of a larger cap.
MAX_COUNT = 2**31 - 1

# Count settings that may be null, and what null means for each.
_NULL_COUNTS = {
    "max_items_per_user": "no cap",
    "max_distance": "every pair",
    "top_k": "no cap",
    "threads": "one per CPU core",
}


@dataclass
class GraphConfig:
    """Settings of the co-interaction graph build.

    The rules apply in this order: interactions without an id or with an
    invalid weight, interactions on unknown items, the undated-interaction
    policy, the lookback window, the per-user cap, the history distance,
    then (on distinct item pairs) the minimum support and the top-k cap.

    Attributes:
        window_days: lookback window in days, above 0 and at most
            ``MAX_WINDOW_DAYS``; an interaction counts when its timestamp is at
            least the reference time minus this many days. None keeps all of
            history, which suits static datasets such as MovieLens-1M, whose
            ratings span 2000 to 2003.
        window_reference: ``"global"`` measures the window back from the
            latest timestamp of all interactions on catalog items; ``"user"``
            from each user's own latest timestamp on catalog items.
        untimed: policy for interactions without a timestamp (Last.fm
            listens). ``"keep"`` treats them as current: the window keeps
            them and they rank as the user's most recent items, the heavier
            (larger ``weight``) first. ``"drop"`` removes them.
        max_items_per_user: the user's most recent distinct items that take
            part in pairs; older ones are dropped and counted. None keeps
            every item.
        max_distance: two items of one user form a pair only when at most
            this many positions apart in the user's recency-ordered history,
            so a history of ``n`` items yields at most ``n * max_distance``
            pairs. None pairs every two items of the history.
        min_count: minimum support, the number of users who co-consumed a
            pair; rarer pairs are dropped.
        weight: normalized edge weight. ``"jaccard"`` is
            ``c / (n_i + n_j - c)`` in ``(0, 1]``; ``"pmi"`` is
            ``ln(c * U / (n_i * n_j))``, which is negative for pairs seen
            together less often than chance. ``c`` is the co-count, ``n_i``
            the number of users with item ``i`` and ``U`` the number of users,
            all counted after the interaction rules.
        top_k: per-node cap per relation: each node ranks its neighbors of
            each item type by weight (then co-count). None keeps every edge.
        top_k_mode: ``"union"`` keeps an edge in the top k of either end.
            Every node then keeps at least ``min(top_k, degree)`` neighbors
            per relation, but hubs may keep more. ``"mutual"`` keeps an edge
            in the top k of both ends, which bounds every degree by
            ``top_k``.
        strict: raise when interactions name items missing from the
            catalog, in place of counting and dropping them.
        memory_limit: DuckDB ``memory_limit`` (for example ``"4GB"``). It caps
            DuckDB's buffer manager, beyond which joins and aggregations spill
            to disk. The process needs more than this, because it also keeps
            the catalog, the kept edges and the output graph.
        threads: DuckDB worker threads; None means one per CPU core.
        temp_directory: parent folder of DuckDB's working database and spill
            files (removed after the build); None means the system temporary
            folder.
    """

    window_days: float | None = 90.0
    window_reference: str = "global"
    untimed: str = "keep"
    max_items_per_user: int | None = 1000
    max_distance: int | None = 50
    min_count: int = 2
    weight: str = "jaccard"
    top_k: int | None = 50
    top_k_mode: str = "union"
    strict: bool = False
    memory_limit: str = "4GB"
    threads: int | None = None
    temp_directory: str | None = None

    def __post_init__(self) -> None:
        self.window_days = _window_days(self.window_days)
        _check_choice("window_reference", self.window_reference, WINDOW_REFERENCES)
        _check_choice("untimed", self.untimed, UNTIMED_POLICIES)
        _check_choice("weight", self.weight, WEIGHTS)
        _check_choice("top_k_mode", self.top_k_mode, TOP_K_MODES)
        for name in ("min_count", *_NULL_COUNTS):
            value = _whole_number(getattr(self, name))
            _check_count(name, value)
            setattr(self, name, None if value is None else int(value))
        if self.max_items_per_user is not None and self.max_items_per_user < 2:
            raise ValueError(
                f"graph.max_items_per_user={self.max_items_per_user} leaves no "
                "pairs; use at least 2, or null for no cap"
            )
        if not isinstance(self.strict, bool):
            raise ValueError(f"graph.strict={self.strict!r} must be true or false")
        _check_memory_limit(self.memory_limit)
        if isinstance(self.temp_directory, os.PathLike):
            self.temp_directory = os.fspath(self.temp_directory)
        if self.temp_directory is not None and not isinstance(self.temp_directory, str):
            raise ValueError(
                f"graph.temp_directory={self.temp_directory!r} is invalid; use a "
                "folder path, or null for the system temporary folder"
            )

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> GraphConfig:
        """Build the settings from a mapping; missing keys take defaults.

        Raises:
            ValueError: if ``mapping`` is not a mapping, names an unknown
                setting, or contains an invalid value.
        """
        if not isinstance(mapping, Mapping):
            raise ValueError(f"graph settings must be a mapping, got {mapping!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(
                f"unknown graph setting(s) {unknown}; known settings are "
                f"{sorted(known)}"
            )
        return cls(**mapping)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-ready dict."""
        return dataclasses.asdict(self)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"graph.{name}={value!r} is invalid; use one of {choices}")


def _window_days(value: Any) -> float | None:
    """Return ``window_days`` as a float, or raise naming the setting."""
    if value is None:
        return None
    # bool is an int subclass, and YAML reads "1e7" (no dot) as a string.
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or not 0 < value <= MAX_WINDOW_DAYS:
        raise ValueError(
            f"graph.window_days={value!r} is invalid; use a number of days above 0 "
            f"and at most {MAX_WINDOW_DAYS} (100 years), or null to keep all of "
            "history"
        )
    return float(value)


def _whole_number(value: Any) -> Any:
    # KFP passes parameter numbers through a protobuf Struct, so a count of
    # 50 can arrive as 50.0. inf and NaN stay floats and fail the check.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _check_count(name: str, value: Any) -> None:
    if value is None and name in _NULL_COUNTS:
        return
    # bool is an int subclass, but `true` is never a valid count.
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not is_int or not 1 <= value <= MAX_COUNT:
        allowed = f"a whole number from 1 to {MAX_COUNT}"
        if name in _NULL_COUNTS:
            allowed += f", or null for {_NULL_COUNTS[name]}"
        raise ValueError(f"graph.{name}={value!r} is invalid; use {allowed}")


def _check_memory_limit(value: Any) -> None:
    match = _MEMORY_PATTERN.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"graph.memory_limit={value!r} is not a DuckDB size; "
            "use for example '4GB' or '512MiB'"
        )
    # DuckDB accepts "0GB" but then fails on its first allocation.
    if float(match.group(1)) == 0:
        raise ValueError(
            f"graph.memory_limit={value!r} leaves DuckDB no memory; use for "
            "example '4GB' or '512MiB'"
        )
