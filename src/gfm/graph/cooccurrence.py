"""Count co-interacted item pairs in DuckDB and weight, threshold and cap them.

The computation is a chain of SQL tables in one DuckDB database on local
disk, where DuckDB's joins, sorts, aggregations and window functions can
spill past ``memory_limit``:

1. ``user_items``: one row per (user, item), merging repeated interactions
   that have both ids and a valid weight (finite and non-negative). A pair
   is dated by its latest timestamp and weighs the sum of its rows.
2. ``staged``: the first rule each (user, item) fails, in rule order:
   unknown item, undated (with ``untimed="drop"``), outside the window.
   The window's reference time comes from catalog items only.
3. ``histories``: each user's surviving items ranked by recency, most
   recent first, cut to ``max_items_per_user``, as one list per user.
4. ``pair_counts``: the item at list position ``p`` pairs with the items at
   positions ``p + 1 .. p + max_distance``. Slicing the list generates
   ``O(n * max_distance)`` rows per history. A self-join on the user would
   enumerate all ``O(n^2)`` pairs before filtering. An equi-join on list
   positions avoids that, but it measured slower and took 2.3 GiB against
   0.5 GiB on MovieLens-1M (DuckDB 2.0.1). ``count(*)`` per unordered pair
   ``(i, j), i < j`` is the number of users who co-consumed it.
5. ``scored`` and ``edges``: minimum support, the normalized weight and the
   per-node top-k cap per relation.

Drops by the interaction rules are counted in co-occurrences (one per user
and item pair) from per-user item counts in closed form, so the pairs that a
rule removes are never materialized. Drops by support and top-k are counted
in distinct item pairs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from gfm.graph.config import GraphConfig
from gfm.graph.errors import UnknownItemsError
from gfm.graph.source import RAW_VIEW

logger = logging.getLogger(__name__)

# Stage codes of a (user, item) row: each rule passed raises the code by one.
STAGE_UNKNOWN, STAGE_UNTIMED, STAGE_WINDOW, STAGE_KEPT = 0, 1, 2, 3

# Examples of unknown item ids and invalid weights named in stats, logs and
# errors.
EXAMPLES = 5

MICROSECONDS_PER_DAY = 86_400 * 1_000_000

# SQL condition on the raw_interactions rows that the merge keeps: both ids
# and a finite, non-negative weight. A NULL weight fails it too, and pandas
# NaN reaches DuckDB as NULL.
_VALID_ROW = (
    "user_id IS NOT NULL AND item_id IS NOT NULL "
    "AND coalesce(isfinite(w) AND w >= 0, FALSE)"
)


@dataclass
class ItemPairs:
    """Undirected item pairs that passed every rule, one row per pair.

    Attributes:
        item_i: int64 ``[E]`` catalog position of the first item.
        item_j: int64 ``[E]`` catalog position of the second item; ``item_i <
            item_j`` in every row.
        count: int64 ``[E]`` number of users who co-consumed the pair.
        weight: float64 ``[E]`` the normalized weight of
            ``GraphConfig.weight``.
        item_users: int64 ``[num_items]`` number of users whose kept history
            contains each catalog item (0 for items without interactions).
        stats: counts of rows, co-occurrences and pairs kept and dropped by
            each rule.
    """

    item_i: np.ndarray
    item_j: np.ndarray
    count: np.ndarray
    weight: np.ndarray
    item_users: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


def count_item_pairs(
    con: duckdb.DuckDBPyConnection,
    catalog: pd.DataFrame,
    config: GraphConfig,
) -> ItemPairs:
    """Run the SQL chain over ``raw_interactions`` and fetch the kept pairs.

    Args:
        con: a DuckDB connection where ``raw_interactions`` is registered
            (see :func:`gfm.graph.source.register_interactions`).
        catalog: one row per catalog item with ``item_id``, ``item_idx`` (its
            position, ``0 .. num_items - 1``) and ``type_idx`` (the position of
            its item type).
        config: the build settings.

    Returns:
        The kept pairs and the counts behind them.

    Raises:
        UnknownItemsError: with ``config.strict`` when interactions name
            items missing from the catalog.
    """
    con.register("catalog", catalog[["item_id", "item_idx", "type_idx"]])
    memory_limit, threads = con.execute(
        "SELECT current_setting('memory_limit'), current_setting('threads')"
    ).fetchone()
    stats: dict[str, Any] = {
        "duckdb": {
            "version": duckdb.__version__,
            "memory_limit": memory_limit,
            "threads": int(threads),
        }
    }

    with _step("scan interactions"):
        rows, missing_id, valid, dated = con.execute(
            "SELECT count(*), "
            "count(*) FILTER (WHERE user_id IS NULL OR item_id IS NULL), "
            f"count(*) FILTER (WHERE {_VALID_ROW}), count(ts) "
            f"FROM {RAW_VIEW}"
        ).fetchone()
    stats["interactions"] = {"rows": rows, "undated": rows - dated}
    stats["interactions_dropped"] = {
        "missing_id": missing_id,
        "invalid_weight": rows - missing_id - valid,
    }
    _log_invalid_rows(con, stats["interactions_dropped"])

    with _step("merge repeated (user, item) interactions"):
        _merge_user_items(con)
    _count_unknown_items(con, stats, config.strict)

    window = _window_settings(con, config)
    stats["window"] = window
    with _step("apply the undated policy and the lookback window"):
        _stage_user_items(con, config, window["applied"])
    with _step("rank histories and apply the per-user cap"):
        _build_histories(con, config)
    _rule_counts(con, config, stats)

    with _step("count co-occurring pairs"):
        _count_pairs(con, config, len(catalog))
    with _step("weight pairs and apply minimum support and top-k"):
        _score_pairs(con, config)
        if config.top_k is not None:
            _cap_top_k(con, config)
        else:
            con.execute("CREATE OR REPLACE TABLE edges AS SELECT * FROM scored")
    stats["item_pairs"], stats["item_pairs_dropped"] = _pair_counts(con)

    num_items = len(catalog)
    # Unordered: assemble_hetero_data sorts each relation itself.
    arrays = con.execute("SELECT i, j, c, weight FROM edges").fetchnumpy()
    users = con.execute("SELECT item_idx, n FROM item_users").fetchnumpy()
    item_users = np.zeros(num_items, dtype=np.int64)
    item_users[np.asarray(users["item_idx"], dtype=np.int64)] = users["n"]
    return ItemPairs(
        item_i=np.asarray(arrays["i"], dtype=np.int64),
        item_j=np.asarray(arrays["j"], dtype=np.int64),
        count=np.asarray(arrays["c"], dtype=np.int64),
        weight=np.asarray(arrays["weight"], dtype=np.float64),
        item_users=item_users,
        stats=stats,
    )


@contextmanager
def _step(name: str) -> Iterator[None]:
    start = time.perf_counter()
    logger.info("graph: %s", name)
    yield
    logger.info("graph: %s done in %.2f s", name, time.perf_counter() - start)


def _log_invalid_rows(con: duckdb.DuckDBPyConnection, dropped: dict[str, int]) -> None:
    if dropped["missing_id"]:
        logger.warning(
            "dropping %d interactions without a user_id or item_id",
            dropped["missing_id"],
        )
    if dropped["invalid_weight"]:
        examples = [
            row[0]
            for row in con.execute(
                f"SELECT DISTINCT w FROM {RAW_VIEW} WHERE user_id IS NOT NULL "
                f"AND item_id IS NOT NULL AND NOT ({_VALID_ROW}) "
                f"LIMIT {EXAMPLES}"
            ).fetchall()
        ]
        logger.warning(
            "dropping %d interactions whose weight is null, NaN, infinite or "
            "negative, for example %s",
            dropped["invalid_weight"],
            examples,
        )


def _merge_user_items(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""
        CREATE OR REPLACE TABLE user_items AS
        SELECT r.user_id, r.item_id, any_value(c.item_idx) AS item_idx,
               max(r.ts) AS ts, sum(r.w) AS w, count(*) AS n_rows
        FROM (SELECT * FROM {RAW_VIEW} WHERE {_VALID_ROW}) AS r
        LEFT JOIN catalog AS c ON r.item_id = c.item_id
        GROUP BY r.user_id, r.item_id
        """
    )


def _count_unknown_items(
    con: duckdb.DuckDBPyConnection, stats: dict[str, Any], strict: bool
) -> None:
    unknown_user_items, rows, distinct_ids, total_user_items = con.execute(
        "SELECT count(*) FILTER (WHERE item_idx IS NULL), "
        "coalesce(sum(n_rows) FILTER (WHERE item_idx IS NULL), 0), "
        "count(DISTINCT item_id) FILTER (WHERE item_idx IS NULL), count(*) "
        "FROM user_items"
    ).fetchone()
    examples = [
        row[0]
        for row in con.execute(
            "SELECT item_id, sum(n_rows) AS n FROM user_items WHERE item_idx IS NULL "
            f"GROUP BY item_id ORDER BY n DESC, item_id LIMIT {EXAMPLES}"
        ).fetchall()
    ]

    interactions = stats["interactions"]
    dropped = stats["interactions_dropped"]
    interactions["duplicates_merged"] = (
        interactions["rows"]
        - dropped["missing_id"]
        - dropped["invalid_weight"]
        - total_user_items
    )
    dropped["unknown_item"] = int(rows)
    stats["user_items"] = {"total": int(total_user_items)}
    stats["user_items_dropped"] = {"unknown_item": int(unknown_user_items)}
    stats["unknown_items"] = {"ids": int(distinct_ids), "examples": examples}

    if not distinct_ids:
        return
    message = (
        f"{rows} interactions name {distinct_ids} item ids missing from the "
        f"catalog, for example {examples}"
    )
    if strict:
        raise UnknownItemsError(
            f"{message}; fix the catalog or the interactions, or set "
            "graph.strict=false to count and drop them"
        )
    logger.warning("%s; dropping them (graph.strict=true makes this an error)", message)


def _window_settings(
    con: duckdb.DuckDBPyConnection, config: GraphConfig
) -> dict[str, Any]:
    # Only interactions on catalog items set the reference time, because
    # the unknown-item rule drops the others before the window applies.
    latest, cutoff = con.execute(
        f"SELECT max(ts), max(ts) - {_window_interval(config)} "
        "FROM user_items WHERE item_idx IS NOT NULL"
    ).fetchone()
    window: dict[str, Any] = {
        "days": config.window_days,
        "reference": config.window_reference,
        "latest_timestamp": latest.isoformat() if latest is not None else None,
        "cutoff": None,
        "applied": False,
    }
    if config.window_days is None:
        return window
    if latest is None:
        logger.warning(
            "no interaction on a catalog item has a timestamp, so the %g-day "
            "window is not applied",
            config.window_days,
        )
        return window
    window["applied"] = True
    if config.window_reference == "global":
        window["cutoff"] = cutoff.isoformat()
    return window


def _window_interval(config: GraphConfig) -> str:
    """Return the window as a DuckDB INTERVAL of whole microseconds."""
    window_micros = round((config.window_days or 0) * MICROSECONDS_PER_DAY)
    return f"to_microseconds({window_micros})"


def _stage_user_items(
    con: duckdb.DuckDBPyConnection, config: GraphConfig, window_applied: bool
) -> None:
    undated_stage = STAGE_UNTIMED if config.untimed == "drop" else STAGE_KEPT
    interval = _window_interval(config)
    if not window_applied:
        outside = "FALSE"
        source = "user_items"
    elif config.window_reference == "global":
        outside = (
            "ts < (SELECT max(ts) FROM user_items WHERE item_idx IS NOT NULL) "
            f"- {interval}"
        )
        source = "user_items"
    else:
        outside = f"ts < reference - {interval}"
        source = (
            "(SELECT *, max(CASE WHEN item_idx IS NOT NULL THEN ts END) "
            "OVER (PARTITION BY user_id) AS reference FROM user_items)"
        )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE staged AS
        SELECT user_id, item_idx, ts, w, n_rows,
               CASE WHEN item_idx IS NULL THEN {STAGE_UNKNOWN}
                    WHEN ts IS NULL THEN {undated_stage}
                    WHEN {outside} THEN {STAGE_WINDOW}
                    ELSE {STAGE_KEPT} END AS stage
        FROM {source}
        """
    )


def _build_histories(con: duckdb.DuckDBPyConnection, config: GraphConfig) -> None:
    cap = (
        "n_window"
        if config.max_items_per_user is None
        else (f"least(n_window, {config.max_items_per_user})")
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE user_counts AS
        SELECT user_id, n_all, n_known, n_dated, n_window, {cap} AS n_kept
        FROM (
            SELECT user_id,
                   count(*) AS n_all,
                   count(*) FILTER (WHERE stage >= {STAGE_UNTIMED}) AS n_known,
                   count(*) FILTER (WHERE stage >= {STAGE_WINDOW}) AS n_dated,
                   count(*) FILTER (WHERE stage = {STAGE_KEPT}) AS n_window
            FROM staged GROUP BY user_id
        )
        """
    )
    # Most recent first; undated items count as current, heavier first.
    limit = (
        ""
        if config.max_items_per_user is None
        else (f"WHERE rank <= {config.max_items_per_user}")
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE kept_items AS
        SELECT user_id, item_idx, rank FROM (
            SELECT user_id, item_idx,
                   row_number() OVER (PARTITION BY user_id
                                      ORDER BY ts DESC NULLS FIRST, w DESC, item_idx)
                       AS rank
            FROM staged WHERE stage = {STAGE_KEPT}
        ) {limit}
        """
    )
    con.execute(
        "CREATE OR REPLACE TABLE histories AS SELECT user_id, "
        "list(item_idx ORDER BY rank) AS items FROM kept_items GROUP BY user_id"
    )
    con.execute(
        "CREATE OR REPLACE TABLE item_users AS "
        "SELECT u.item_idx, u.n, c.type_idx FROM (SELECT item_idx, count(*) AS n "
        "FROM kept_items GROUP BY item_idx) AS u JOIN catalog AS c USING (item_idx)"
    )


def _rule_counts(
    con: duckdb.DuckDBPyConnection, config: GraphConfig, stats: dict[str, Any]
) -> None:
    """Add the interactions, users and co-occurrences removed by each rule."""
    distance = config.max_distance

    def pairs(n: str) -> str:
        return f"sum({n} * ({n} - 1) // 2)"

    if distance is None:
        within = pairs("n_kept")
    else:
        # Pairs at most `distance` apart among n positions: with m =
        # min(distance, n - 1) that is sum over k = 1..m of (n - k).
        m = f"least({distance}, greatest(n_kept - 1, 0))"
        within = f"sum({m} * n_kept - {m} * ({m} + 1) // 2)"
    row = con.execute(
        f"""
        SELECT {pairs("n_all")}, {pairs("n_known")}, {pairs("n_dated")},
               {pairs("n_window")}, {pairs("n_kept")}, {within},
               count(*), count(*) FILTER (WHERE n_kept > 0),
               count(*) FILTER (WHERE n_kept > 1),
               count(*) FILTER (WHERE n_window > n_kept),
               sum(n_known - n_dated), sum(n_dated - n_window),
               sum(n_window - n_kept), sum(n_kept)
        FROM user_counts
        """
    ).fetchone()
    (
        all_,
        known,
        dated,
        in_window,
        kept,
        within_distance,
        users,
        users_kept,
        users_paired,
        users_capped,
        untimed,
        outside,
        over_cap,
        kept_items,
    ) = [int(value or 0) for value in row]
    rows_by_stage = dict(
        con.execute("SELECT stage, sum(n_rows) FROM staged GROUP BY stage").fetchall()
    )
    stats["interactions_dropped"].update(
        untimed=int(rows_by_stage.get(STAGE_UNTIMED, 0)),
        window=int(rows_by_stage.get(STAGE_WINDOW, 0)),
    )
    stats["user_items"]["kept"] = kept_items
    stats["user_items_dropped"].update(
        untimed=untimed, window=outside, user_cap=over_cap
    )
    stats["users"] = {
        "total": users,
        "kept": users_kept,
        "with_pairs": users_paired,
        "capped": users_capped,
    }
    stats["co_occurrences"] = {"possible": all_, "kept": within_distance}
    stats["co_occurrences_dropped"] = {
        "unknown_item": all_ - known,
        "untimed": known - dated,
        "window": dated - in_window,
        "user_cap": in_window - kept,
        "distance": kept - within_distance,
    }


def _count_pairs(
    con: duckdb.DuckDBPyConnection, config: GraphConfig, num_items: int
) -> None:
    # DuckDB lists are 1-based and slices include both ends, so
    # items[p + 1 : p + d] contains the d items after position p.
    if config.max_distance is None:
        following = "items[p + 1:]"
    else:
        following = f"items[p + 1:p + {config.max_distance}]"
    # One BIGINT key per unordered pair hashes faster than two columns.
    con.execute(
        f"""
        CREATE OR REPLACE TABLE pair_counts AS
        WITH positions AS (
            SELECT items, unnest(range(1, len(items))) AS p
            FROM histories WHERE len(items) > 1
        ), occurrences AS (
            SELECT items[p] AS a, unnest({following}) AS b FROM positions
        ), keys AS (
            SELECT least(a, b)::BIGINT * {num_items} + greatest(a, b) AS pair,
                   count(*) AS c
            FROM occurrences GROUP BY pair
        )
        SELECT CAST(pair // {num_items} AS INTEGER) AS i,
               CAST(pair % {num_items} AS INTEGER) AS j, c
        FROM keys
        """
    )


def _score_pairs(con: duckdb.DuckDBPyConnection, config: GraphConfig) -> None:
    if config.weight == "jaccard":
        weight = "p.c / (ui.n + uj.n - p.c)::DOUBLE"
    else:
        users = con.execute("SELECT count(*) FROM histories").fetchone()[0]
        weight = f"ln(p.c * {float(users)!r} / (ui.n::DOUBLE * uj.n))"
    con.execute(
        f"""
        CREATE OR REPLACE TABLE scored AS
        SELECT p.i, p.j, p.c, {weight} AS weight, ui.type_idx AS ti, uj.type_idx AS tj
        FROM pair_counts AS p
        JOIN item_users AS ui ON ui.item_idx = p.i
        JOIN item_users AS uj ON uj.item_idx = p.j
        WHERE p.c >= {config.min_count}
        """
    )


def _cap_top_k(con: duckdb.DuckDBPyConnection, config: GraphConfig) -> None:
    # Each end keeps its top k neighbors of the other end's type, ranked by
    # weight, then co-count, then the lower neighbor position. A pair kept
    # by one end passes "union", and "mutual" needs both ends. The window
    # operator spills to disk. max_by(pair, key, k) measured twice as fast
    # on MovieLens-1M, but it ran out of memory at 10M interactions (DuckDB
    # 2.0.1, memory_limit 4GB).
    ends = 1 if config.top_k_mode == "union" else 2
    con.execute(
        f"""
        CREATE OR REPLACE TABLE edges AS
        WITH directed AS (
            SELECT i, j, c, weight, i AS src, tj AS dst_type, j AS dst FROM scored
            UNION ALL
            SELECT i, j, c, weight, j AS src, ti AS dst_type, i AS dst FROM scored
        ), top AS (
            SELECT i, j, c, weight FROM directed
            QUALIFY row_number() OVER (
                PARTITION BY src, dst_type ORDER BY weight DESC, c DESC, dst
            ) <= {config.top_k}
        )
        SELECT i, j, any_value(c) AS c, any_value(weight) AS weight
        FROM top GROUP BY i, j HAVING count(*) >= {ends}
        """
    )


def _pair_counts(
    con: duckdb.DuckDBPyConnection,
) -> tuple[dict[str, int], dict[str, int]]:
    distinct, max_count, scored, kept = con.execute(
        "SELECT (SELECT count(*) FROM pair_counts), "
        "(SELECT coalesce(max(c), 0) FROM pair_counts), "
        "(SELECT count(*) FROM scored), (SELECT count(*) FROM edges)"
    ).fetchone()
    pairs = {
        "distinct": int(distinct),
        "max_count": int(max_count),
        "after_support": int(scored),
        "kept": int(kept),
    }
    dropped = {"support": int(distinct - scored), "top_k": int(scored - kept)}
    return pairs, dropped
