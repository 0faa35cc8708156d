"""Speed of the data stage: MovieLens parsing, splits and synthetic generation.

Three tables, each with its variants side by side:

1. Parsing ``ml-1m/ratings.dat``: pandas with ``sep="::"`` (its python
   engine) against the loader's rewrite to tabs plus the C parser, and the
   whole ``load_dataset("movielens-1m")`` with validation.
2. ``split_dataset`` on MovieLens-1M with each protocol.
3. ``write_synthetic`` at several chunk sizes, each in a fresh child process
   so its peak resident memory (RSS) is its own.

Usage::

    GFM_DATA_DIR=... python benchmarks/data.py --synthetic-rows 5000000
    python benchmarks/data.py --synthetic-rows 30000000 --chunk-rows 1000000
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import tempfile
import time

import pandas as pd

from gfm import settings


def _time(function, repeat: int) -> float:
    """Return the best wall time of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def bench_parsing(repeat: int) -> None:
    from gfm.data import load_dataset
    from gfm.data.movielens import read_double_colon

    path = settings.data_dir() / "ml-1m" / "ratings.dat"
    names = ["user_id", "movie_id", "rating", "seconds"]

    def python_engine() -> None:
        pd.read_csv(path, sep="::", engine="python", header=None, names=names)

    def tab_rewrite() -> None:
        read_double_colon(path.read_bytes(), names, {"user_id": str, "movie_id": str})

    rows = [
        ("pandas sep='::' (python engine)", _time(python_engine, 1)),
        ("rewrite '::' to tab + C parser", _time(tab_rewrite, repeat)),
        ("load_dataset('movielens-1m'), all tables + validation",
         _time(lambda: load_dataset("movielens-1m"), repeat)),
    ]
    print("\n1. Parsing ml-1m/ratings.dat (1,000,209 rows), best of runs")
    print(f"{'variant':<58} {'seconds':>8}")
    for name, seconds in rows:
        print(f"{name:<58} {seconds:>8.2f}")


def bench_splits(repeat: int) -> None:
    from gfm.data import load_dataset
    from gfm.data.splits import split_dataset

    dataset = load_dataset("movielens-1m")
    variants = [
        ("temporal, no window", {"window_days": None}),
        ("leave_last_n (1 valid, 1 test)", {"protocol": "leave_last_n"}),
        ("random 80/10/10", {"protocol": "random"}),
        ("random + 10 % cold items", {"protocol": "random", "cold_item_fraction": 0.1}),
    ]
    print("\n2. split_dataset on MovieLens-1M, best of runs")
    print(f"{'protocol':<34} {'seconds':>8} {'train':>9} {'valid':>8} {'test':>8}")
    for name, config in variants:
        result = {}

        def run(config=config, result=result) -> None:
            result["split"] = split_dataset(dataset, config)

        seconds = _time(run, repeat)
        split = result["split"]
        print(f"{name:<34} {seconds:>8.2f} {len(split.train):>9} {len(split.valid):>8} "
              f"{len(split.test):>8}")


def _synthetic_child(rows: int, chunk_rows: int, out: str, queue) -> None:
    from gfm.data.synthetic import SyntheticConfig, write_synthetic

    config = SyntheticConfig(num_users=200_000, num_interactions=rows, num_clusters=32,
                             items_per_type={"movie": 60_000, "podcast": 20_000,
                                             "audiobook": 20_000})
    started = time.perf_counter()
    report = write_synthetic(config, out, chunk_rows=chunk_rows)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((seconds, report["generation"]["interactions_parquet_bytes"], peak_mib))


def bench_synthetic(rows: int, chunk_sizes: list[int]) -> None:
    print(f"\n3. write_synthetic, {rows:,} interactions, 200,000 users, 100,000 items "
          f"in 3 types, 32 clusters, local disk")
    print(f"{'chunk_rows':>10} {'seconds':>8} {'rows/s':>10} {'parquet MiB':>12} "
          f"{'peak RSS MiB':>13}")
    context = multiprocessing.get_context("spawn")
    for chunk_rows in chunk_sizes:
        out = tempfile.mkdtemp(prefix="gfm-synth-bench-")
        queue = context.Queue()
        child = context.Process(target=_synthetic_child, args=(rows, chunk_rows, out, queue))
        child.start()
        seconds, size, peak = queue.get()
        child.join()
        shutil.rmtree(out, ignore_errors=True)
        print(f"{chunk_rows:>10,} {seconds:>8.1f} {rows / seconds:>10,.0f} "
              f"{size / 2**20:>12.0f} {peak:>13.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant")
    parser.add_argument("--synthetic-rows", type=int, default=5_000_000,
                        help="interactions per synthetic run")
    parser.add_argument("--chunk-rows", type=int, nargs="+",
                        default=[250_000, 1_000_000, 4_000_000],
                        help="chunk sizes to compare")
    parser.add_argument("--skip-movielens", action="store_true",
                        help="only run the synthetic table")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs")
    if not args.skip_movielens:
        bench_parsing(args.repeat)
        bench_splits(args.repeat)
    bench_synthetic(args.synthetic_rows, args.chunk_rows)


if __name__ == "__main__":
    main()
