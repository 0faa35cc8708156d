"""Training throughput of the two-tower model on MovieLens-1M, variants side by side.

Loads MovieLens-1M from ``GFM_DATA_DIR``, splits it with the shipped
``movielens-1m`` settings and trains the ``movies`` product once per variant
for a fixed number of epochs (early stopping off unless ``--patience`` is
given). With ``--shipped-run`` it then trains once more with the shipped
settings and early stopping on. The item inputs are stand-ins with
the pipeline's dimensions. The HGNN input is a rank-128 SVD of the training
user-item matrix, and the LLM input is a 384-dimensional random projection
of the genres (the width of all-MiniLM-L6-v2). The compute per example
matches a real run, but the recall figures are only indicative.

Run:
    GFM_DATA_DIR=... .venv/bin/python benchmarks/twotower.py --epochs 1 --shipped-run
    GFM_DATA_DIR=... .venv/bin/python benchmarks/twotower.py --epochs 8 --patience 2 \
        --variants defaults-1-thread no-logq-1-thread dropout-0.2-1-thread
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

import gfm
from gfm.data import load_dataset
from gfm.data.splits import split_dataset
from gfm.logging_setup import configure_logging
from gfm.twotower import TwoTowerConfig, train_two_tower
from gfm.twotower.stand_ins import genre_embeddings, svd_embeddings

VARIANTS = {
    "defaults-1-thread": {"num_threads": 1},
    "defaults-2-threads": {"num_threads": 2},
    "paper-towers-512-256-128-1-thread": {"tower_dims": [512, 256, 128], "num_threads": 1},
    "no-hgnn-1-thread": {"use_hgnn": False, "num_threads": 1},
    # Settings compared for recall rather than speed (run with --patience).
    "no-logq-1-thread": {"logq_correction": False, "num_threads": 1},
    "target-in-history-1-thread": {"exclude_target_from_history": False, "num_threads": 1},
    "temperature-0.1-1-thread": {"temperature": 0.1, "num_threads": 1},
    "learning-rate-0.003-1-thread": {"learning_rate": 0.003, "num_threads": 1},
    "dropout-0.2-1-thread": {"dropout": 0.2, "num_threads": 1},
}
SPEED_VARIANTS = ["defaults-1-thread", "defaults-2-threads",
                  "paper-towers-512-256-128-1-thread", "no-hgnn-1-thread"]


def run(name: str, settings: dict, inputs: dict) -> dict:
    """Train once and return the figures of one result row."""
    started = time.perf_counter()
    cpu_started = time.process_time()
    model = train_two_tower(config=TwoTowerConfig.from_dict(settings), **inputs)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    metrics = model.metrics
    return {
        "variant": name,
        "epochs": len(metrics["epochs"]),
        "examples/s": metrics["examples_per_second"],
        "s/epoch": round(float(np.mean([e["seconds"] for e in metrics["epochs"]])), 1),
        "total s": round(seconds, 1),
        "CPU s": round(cpu_seconds, 1),
        "valid Recall@20": round(metrics["best_valid_recall"], 4),
        "popularity Recall@20": round(metrics["popularity_valid_recall"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1,
                        help="epochs per fixed-length variant (default 1)")
    parser.add_argument("--patience", type=int, default=None,
                        help="early-stopping patience of the variants (default: none, "
                             "every variant runs --epochs epochs)")
    parser.add_argument("--variants", nargs="+", default=SPEED_VARIANTS,
                        choices=list(VARIANTS), metavar="NAME",
                        help=f"variants to run, from {', '.join(VARIANTS)} (default: "
                             f"{', '.join(SPEED_VARIANTS)})")
    parser.add_argument("--shipped-run", action="store_true",
                        help="also train with the shipped settings and early stopping")
    parser.add_argument("--shipped-threads", type=int, default=None,
                        help="num_threads of the shipped run (default: the settings' own)")
    args = parser.parse_args()
    configure_logging()

    dataset = load_dataset("movielens-1m")
    shipped = yaml.safe_load((Path(gfm.__file__).parent / "configs" / "movielens-1m.yaml")
                             .read_text())
    split = split_dataset(dataset, shipped["split"])
    inputs = {
        "product": "movies", "item_types": ["movie"], "train": split.train,
        "valid": split.valid, "items": dataset.items, "users": dataset.users,
        "hgnn": svd_embeddings(split.train, dataset.items, 128),
        "llm": genre_embeddings(dataset.items, 384),
    }
    print(f"MovieLens-1M: {len(split.train)} training interactions, "
          f"{len(split.valid)} valid, torch {torch.__version__}, "
          f"{torch.get_num_threads()} default threads")

    fixed = {"max_epochs": args.epochs, "patience": args.patience or args.epochs}
    rows = [run(name, dict(fixed, **VARIANTS[name]), inputs) for name in args.variants]
    if args.shipped_run:
        shipped_settings = {k: v for k, v in shipped["twotower"].items() if k != "products"}
        if args.shipped_threads:
            shipped_settings["num_threads"] = args.shipped_threads
        rows.append(run("shipped movielens-1m settings, early stopping", shipped_settings,
                        inputs))

    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False))
    print(json.dumps(rows))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
