"""Benchmark HGNN training on the full MovieLens-1M and Last.fm-2k graphs.

For each graph and each Ray worker count (1 and 2 by default) it runs
``train_hgnn`` on a fresh local Ray cluster. It prints the training
throughput (positive pairs per second, over all workers), the epoch time
and the wall time. It also prints the peak resident memory of the driver
and the Ray processes together, sampled every 0.2 s. ``--variants`` also trains a few
settings side by side in one process, without Ray, and prints their
validation AUC and HR@10.

The graphs are built the way the pipeline builds them (sentence-transformers
features, default ``GraphConfig`` without a time window) unless
``--graph NAME=FOLDER`` gives a graph folder. Run from the repository root:

    GFM_DATA_DIR=... .venv/bin/python benchmarks/hgnn.py --max-epochs 3 \\
        --graph movielens-1m=/tmp/graphs/movielens-1m --variants
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import psutil

DATASETS = ("movielens-1m", "lastfm-2k")


def build_graph_folder(name: str, folder: Path) -> str:
    """Featurize and build the graph of dataset ``name`` into ``folder``."""
    from gfm.data import load_dataset
    from gfm.featurize.config import FeaturizeConfig
    from gfm.featurize.run import featurize_items
    from gfm.graph import GraphConfig, build_graph, save_graph

    dataset = load_dataset(name)
    features = featurize_items(
        dataset.items,
        FeaturizeConfig.from_dict(
            {
                "engine": "sentence-transformers",
                "device": "cpu",
                "empty_text": "item_type",
            }
        ),
    )
    result = build_graph(
        dataset.interactions, dataset.items, features, GraphConfig(window_days=None)
    )
    save_graph(result, folder)
    return str(folder)


class PeakMemory:
    """Samples the RSS of this process and its descendants in a thread."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_ray(graph_uri: str, workers: int, args: argparse.Namespace) -> dict:
    """Train with ``workers`` Ray workers and return the measured numbers."""
    from gfm.hgnn import HGNNConfig, train_hgnn

    config = HGNNConfig.from_dict(
        {
            "max_epochs": args.max_epochs,
            "patience": args.max_epochs,
            "num_workers": workers,
            "cpus_per_worker": args.cpus_per_worker,
            "use_gpu": args.use_gpu,
            "batch_size": args.batch_size,
        }
    )
    with tempfile.TemporaryDirectory(prefix="gfm-hgnn-bench-") as out:
        started = time.perf_counter()
        with PeakMemory() as memory:
            result = train_hgnn(graph_uri, out, config)
        wall = time.perf_counter() - started
    history = result.metrics["history"]
    train_time = sum(h["train_time_s"] for h in history)
    pairs = sum(h["train_pairs"] for h in history)
    return {
        "workers": workers,
        "epochs": len(history),
        "pairs_per_epoch": history[0]["train_pairs"],
        "pairs_per_s": pairs / train_time,
        "epoch_time_s": sum(h["epoch_time_s"] for h in history) / len(history),
        "wall_s": wall,
        "peak_rss_gib": memory.peak_bytes / 2**30,
        "best_val_auc": result.metrics["summary"]["best_val_auc"],
        "best_val_hr": result.metrics["summary"]["best_val_hr"],
    }


VARIANTS = {
    "default": {},
    "no in-batch negatives": {"in_batch_negatives": False},
    "pooling projection": {"project": True},
    "projection, no in-batch": {"project": True, "in_batch_negatives": False},
    "inference fan-out [10, 5]": {"inference_num_neighbors": [10, 5]},
    "fan-outs [5, 5]": {"num_neighbors": [5, 5]},
    "batch 1024": {"batch_size": 1024},
    "margin 0.5": {"margin": 0.5},
}


def run_variants(graph_uri: str, args: argparse.Namespace) -> Iterator[dict]:
    """Train each of :data:`VARIANTS` in this process (one torch thread)."""
    import torch

    from gfm.graph import load_graph
    from gfm.hgnn import HGNNConfig
    from gfm.hgnn.loop import train_loop

    torch.set_num_threads(1)
    data = load_graph(graph_uri).data
    for name, changes in VARIANTS.items():
        if args.variant and name not in args.variant:
            continue
        config = HGNNConfig.from_dict(
            dict(
                {"max_epochs": args.max_epochs, "patience": args.max_epochs}, **changes
            )
        )
        started = time.perf_counter()
        state = train_loop(data, config)
        best = state.history[state.best_epoch - 1]
        yield {
            "variant": name,
            "best_val_auc": best["val_auc"],
            "best_val_hr": best["val_hr"],
            "best_epoch": state.best_epoch,
            "seconds": time.perf_counter() - started,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", nargs="+", default=list(DATASETS), choices=DATASETS
    )
    parser.add_argument(
        "--graph",
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="use this graph folder for a dataset instead of building it",
    )
    parser.add_argument(
        "--workers",
        nargs="+",
        type=int,
        default=[1, 2],
        help="Ray worker counts to compare",
    )
    parser.add_argument("--max-epochs", type=int, default=3, help="epochs per run")
    parser.add_argument(
        "--batch-size", type=int, default=256, help="pairs per step and worker"
    )
    parser.add_argument(
        "--cpus-per-worker",
        type=int,
        default=1,
        help="CPUs (and torch threads) per Ray worker",
    )
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per Ray worker")
    parser.add_argument(
        "--skip-ray", action="store_true", help="skip the Ray runs (with --variants)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        choices=list(VARIANTS),
        help="compare only these variants (repeatable; default: all)",
    )
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also compare settings on the first dataset, without Ray",
    )
    args = parser.parse_args(argv)

    from gfm.hgnn.distributed import use_loopback
    from gfm.logging_setup import configure_logging

    use_loopback()
    configure_logging(os.environ.get("GFM_LOG_LEVEL", "WARNING"))
    graphs = dict(item.split("=", 1) for item in args.graph)
    print(
        f"machine: {os.cpu_count()} CPUs, GPU requested: {args.use_gpu}, "
        f"python {sys.version.split()[0]}"
    )
    missing = [name for name in args.datasets if name not in graphs]
    work = Path(tempfile.mkdtemp(prefix="gfm-hgnn-graphs-")) if missing else None
    for name in missing:
        started = time.perf_counter()
        graphs[name] = build_graph_folder(name, work / name)
        print(f"{name}: built the graph in {time.perf_counter() - started:.0f} s")

    rows = []
    for name in args.datasets if not args.skip_ray else []:
        for workers in args.workers:
            row = {"dataset": name, **run_ray(graphs[name], workers, args)}
            rows.append(row)
            print(json.dumps(row), flush=True)

    print()
    header = (
        "dataset",
        "workers",
        "pairs/epoch",
        "pairs/s",
        "epoch s",
        "wall s",
        "peak RSS GiB",
        "best AUC",
        "best HR@10",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print(
            f"| {row['dataset']} | {row['workers']} | {row['pairs_per_epoch']} | "
            f"{row['pairs_per_s']:.0f} | {row['epoch_time_s']:.1f} | {row['wall_s']:.0f} | "
            f"{row['peak_rss_gib']:.2f} | {row['best_val_auc']:.4f} | {row['best_val_hr']:.4f} |"
        )

    if args.variants:
        name = args.datasets[0]
        print(
            f"\nvariants on {name}, {args.max_epochs} epochs, one process, one thread:"
        )
        print("| variant | best AUC | best HR@10 | best epoch | seconds |")
        print("| --- | --- | --- | --- | --- |")
        for row in run_variants(graphs[name], args):
            print(
                f"| {row['variant']} | {row['best_val_auc']:.4f} | {row['best_val_hr']:.4f} "
                f"| {row['best_epoch']} | {row['seconds']:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
