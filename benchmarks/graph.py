"""Build time and peak memory of the co-interaction graph, DuckDB against pandas.

Cases: MovieLens-1M (1,000,209 ratings) and synthetic datasets of 1M, 10M
and 30M interactions over three item types. Each case runs in a fresh child
process, so its peak resident memory (max RSS, read with ``os.wait4``) is
its own, with two variants side by side:

* ``duckdb``: ``gfm.graph.build_graph`` on the Parquet file, without node
  features, with every rule (window, cap, distance, support, weights,
  top-k).
* ``pandas``: a straightforward pandas version of the same pair counts. It
  merges repeated (user, item) rows, ranks each history by recency and caps
  it. Then it self-joins each history on the user, keeps pairs within
  ``max_distance``, counts per pair and applies the minimum support. It
  computes no weights or top-k, so it does less work than the DuckDB
  variant. The self-join materializes
  every pair of a history before the distance filter, so the script skips
  it, with the reason printed, when that join would exceed
  ``--pandas-max-rows`` rows.

Both variants report the distinct pairs and the pairs after support, which
must agree. Inputs are cached under ``--workdir``.

Usage::

    GFM_DATA_DIR=... python benchmarks/graph.py
    python benchmarks/graph.py --sizes 1000000 --skip-movielens
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Synthetic catalogs: interactions -> (users, items per type). Users grow
# with the interactions, so the mean history stays near 50 items.
SYNTHETIC = {
    1_000_000: (20_000, {"movie": 20_000, "podcast": 8_000, "audiobook": 4_000}),
    10_000_000: (200_000, {"movie": 60_000, "podcast": 25_000, "audiobook": 10_000}),
    30_000_000: (600_000, {"movie": 100_000, "podcast": 40_000, "audiobook": 15_000}),
}

# Settings of every case. MovieLens ratings span 2000 to 2003, so the
# window is off there. The synthetic interactions span 91 days.
MOVIELENS_SETTINGS = {"window_days": None}
SYNTHETIC_SETTINGS: dict[str, Any] = {}


def _prepare_movielens(workdir: Path) -> Path:
    from gfm.data import load_dataset

    folder = workdir / "movielens-1m"
    if not (folder / "interactions.parquet").exists():
        load_dataset("movielens-1m").save(folder)
    return folder


def _prepare_synthetic(workdir: Path, rows: int) -> Path:
    from gfm.data.synthetic import SyntheticConfig, write_synthetic

    folder = workdir / f"synthetic-{rows}"
    if not (folder / "report.json").exists():
        users, items = SYNTHETIC[rows]
        config = SyntheticConfig(
            num_users=users, items_per_type=items, num_interactions=rows, seed=1
        )
        started = time.perf_counter()
        write_synthetic(config, folder)
        print(
            f"generated {folder.name} in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    return folder


def _self_join_rows(folder: Path, settings: dict[str, Any]) -> int:
    """Return the rows a per-user self-join of the capped histories makes."""
    import duckdb

    from gfm.graph import GraphConfig

    cap = GraphConfig.from_dict(settings).max_items_per_user or 2**31
    query = (
        f"SELECT sum(least(n, {cap}) * least(n, {cap})) FROM (SELECT user_id, "
        f"count(DISTINCT item_id) AS n FROM '{folder / 'interactions.parquet'}' "
        "GROUP BY user_id)"
    )
    return int(duckdb.connect().execute(query).fetchone()[0])


def _run_child(variant: str, folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--input",
        str(folder),
        "--settings",
        json.dumps(settings),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        return {"error": f"exit code {process.returncode}", "wall_s": wall}
    result = json.loads(output.strip().splitlines()[-1])
    # ru_maxrss is in KiB on Linux. CPU seconds (user + system) vary less
    # than wall time when other jobs share the cores.
    result.update(
        max_rss_gib=usage.ru_maxrss / 2**20,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
    )
    return result


def _child(variant: str, folder: Path, settings: dict[str, Any]) -> None:
    import pandas as pd

    items = pd.read_parquet(folder / "items.parquet", columns=["item_id", "item_type"])
    interactions_path = folder / "interactions.parquet"
    started = time.perf_counter()
    if variant == "duckdb":
        from gfm.graph import GraphConfig, build_graph

        stats = build_graph(
            interactions_path, items, None, GraphConfig.from_dict(settings)
        ).stats
        result = {
            "distinct_pairs": stats["item_pairs"]["distinct"],
            "after_support": stats["item_pairs"]["after_support"],
            "edges": sum(stats["edges"].values()),
            "co_occurrences": stats["co_occurrences"]["kept"],
        }
    else:
        result = _pandas_pairs(interactions_path, items, settings)
    result["build_s"] = time.perf_counter() - started
    print(json.dumps(result))


def _pandas_pairs(path: Path, items, settings: dict[str, Any]) -> dict[str, Any]:
    """Count pairs like the DuckDB chain, with a pandas self-join per user."""
    import pandas as pd

    from gfm.graph import GraphConfig

    config = GraphConfig.from_dict(settings)
    frame = pd.read_parquet(path, columns=["user_id", "item_id", "timestamp", "weight"])
    frame = frame[frame["weight"].ge(0) & frame["weight"].lt(float("inf"))]
    position = pd.Series(range(len(items)), index=items["item_id"].to_numpy())
    frame["item"] = frame["item_id"].map(position)
    frame = frame.dropna(subset=["item"])
    # Like the DuckDB chain, only rows on catalog items set the window.
    latest = frame["timestamp"].max()
    frame["item"] = frame["item"].astype("int64")
    frame["user"] = pd.factorize(frame["user_id"])[0]
    merged = (
        frame.groupby(["user", "item"], sort=False)
        .agg(ts=("timestamp", "max"), w=("weight", "sum"))
        .reset_index()
    )

    if config.window_days is not None and pd.notna(latest):
        cutoff = latest - pd.Timedelta(days=config.window_days)
        merged = merged[merged["ts"].isna() | (merged["ts"] >= cutoff)]
    # Most recent first, undated first, then heavier, then catalog position.
    merged = merged.sort_values(
        ["user", "ts", "w", "item"],
        ascending=[True, False, False, True],
        na_position="first",
    )
    merged["rank"] = merged.groupby("user").cumcount()
    if config.max_items_per_user is not None:
        merged = merged[merged["rank"] < config.max_items_per_user]

    history = merged[["user", "item", "rank"]]
    pairs = history.merge(history, on="user", suffixes=("_a", "_b"))
    pairs = pairs[pairs["rank_b"] > pairs["rank_a"]]
    if config.max_distance is not None:
        pairs = pairs[pairs["rank_b"] - pairs["rank_a"] <= config.max_distance]
    low = pairs[["item_a", "item_b"]].min(axis=1)
    high = pairs[["item_a", "item_b"]].max(axis=1)
    counts = pd.DataFrame({"i": low, "j": high}).value_counts()
    return {
        "distinct_pairs": len(counts),
        "after_support": int((counts >= config.min_count).sum()),
        "co_occurrences": int(counts.sum()),
    }


def _row(case: str, variant: str, interactions: int, result: dict[str, Any]) -> str:
    start = f"| {case} | {variant} | {interactions:,} |"
    if "skipped" in result:
        return f"{start} skipped: {result['skipped']} ||||||"
    if "error" in result:
        return f"{start} failed: {result['error']} ||||||"
    per_million = result["build_s"] / (interactions / 1e6)
    return (
        f"| {case} | {variant} | {interactions:,} | {result['build_s']:.1f} | "
        f"{per_million:.2f} | {result['cpu_s']:.1f} | {result['max_rss_gib']:.2f} | "
        f"{result['distinct_pairs']:,} | {result['after_support']:,} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="1000000,10000000,30000000",
        help=f"comma-separated synthetic interaction counts (from {sorted(SYNTHETIC)})",
    )
    parser.add_argument(
        "--skip-movielens", action="store_true", help="leave out the MovieLens-1M case"
    )
    parser.add_argument(
        "--workdir",
        default="/tmp/gfm-bench-graph",
        help="folder for the cached input datasets",
    )
    parser.add_argument(
        "--pandas-max-rows",
        type=int,
        default=60_000_000,
        help="largest self-join, in rows, the pandas variant runs "
        "(default: 60,000,000, several GiB of pandas frames)",
    )
    parser.add_argument(
        "--memory-limit",
        default="4GB",
        help="DuckDB memory_limit of the duckdb variant (default: 4GB)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        _child(args.child, Path(args.input), json.loads(args.settings))
        return

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, Path, dict[str, Any]]] = []
    if not args.skip_movielens:
        cases.append(("movielens-1m", _prepare_movielens(workdir), MOVIELENS_SETTINGS))
    for size in (int(s) for s in args.sizes.split(",") if s):
        if size not in SYNTHETIC:
            parser.error(
                f"--sizes: no synthetic case of {size}; use {sorted(SYNTHETIC)}"
            )
        cases.append(
            (
                f"synthetic-{size // 1_000_000}M",
                _prepare_synthetic(workdir, size),
                SYNTHETIC_SETTINGS,
            )
        )

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print(
        "| case | variant | interactions | build s | s per 1M | CPU s | max RSS GiB "
        "| distinct pairs | pairs after support |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case, folder, settings in cases:
        settings = dict(settings, memory_limit=args.memory_limit)
        interactions = _count_rows(folder)
        result = _run_child("duckdb", folder, settings)
        print(_row(case, "duckdb", interactions, result), flush=True)

        join_rows = _self_join_rows(folder, settings)
        if join_rows > args.pandas_max_rows:
            skipped = {
                "skipped": f"self-join of {join_rows:,} rows > --pandas-max-rows"
            }
            print(_row(case, "pandas", interactions, skipped), flush=True)
            continue
        baseline = _run_child("pandas", folder, settings)
        print(_row(case, "pandas", interactions, baseline), flush=True)
        if "error" not in baseline and "error" not in result:
            same = (baseline["distinct_pairs"], baseline["after_support"]) == (
                result["distinct_pairs"],
                result["after_support"],
            )
            print(f"|  | pair counts agree: {same} ||||||||", flush=True)


def _count_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(folder / "interactions.parquet").metadata.num_rows


if __name__ == "__main__":
    main()
