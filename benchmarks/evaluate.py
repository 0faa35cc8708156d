"""Benchmark the evaluation: ranking time per 1,000 users, and the full runner.

Part 1 times the full-ranking harness with the shipped splits of
MovieLens-1M (3,883 movies) and Last.fm-2k (17,632 artists), for several
user batch sizes and torch thread counts side by side. Popularity's own
cost is negligible, so its time is the harness's; EASE (a dense matrix
product) and item-kNN (a sparse one) add a real scorer's cost.

Part 2 (``--full``) runs the experiment runner: every stage for every run
settings document and seed, then prints the headline table (HR@10 on warm
users, mean ± std over the seeds) and the wall time of each stage.

Usage::

    GFM_DATA_DIR=<folder with ml-1m/ and lastfm-2k/> \\
        .venv/bin/python benchmarks/evaluate.py [--full] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from gfm.logging_setup import configure_logging

logger = logging.getLogger("gfm.benchmarks.evaluate")


def _context(run_settings: str, product: str, item_types: list[str],
             batch_size: int, num_threads: int | None):
    from gfm.pipelines.run_config import load_run_config

    from gfm.data import load_dataset
    from gfm.data.splits import split_dataset
    from gfm.evaluation.config import EvaluationConfig
    from gfm.evaluation.context import build_context
    from gfm.evaluation.stage import history_of

    run_config = load_run_config(run_settings)
    dataset = load_dataset(run_config.dataset["name"])
    split = split_dataset(dataset, run_config.split)
    config = EvaluationConfig.from_dict(dict(run_config.evaluation, batch_size=batch_size,
                                             num_threads=num_threads))
    return build_context(product, item_types, dataset.items,
                         history_of(split, config.history_parts), split.test,
                         dataset.users, split.cold_items, {}, config)


# (run settings, product, item types, scorers): MovieLens-1M's 3,883 movies
# with EASE's dense product, and Last.fm-2k's 17,632 artists with item-kNN's
# sparse one.
CASES = (
    ("movielens-1m", "movies", ["movie"], ("popularity", "ease")),
    ("lastfm-2k", "artists", ["artist"], ("popularity", "item-knn")),
)


def time_ranking(batch_sizes: list[int], thread_counts: list[int]) -> list[dict]:
    """Time the harness per case, scorer, batch size and torch thread count."""
    from dataclasses import replace

    from gfm.evaluation.baselines import make_baselines
    from gfm.evaluation.harness import evaluate_scorers

    results = []
    for run_settings, product, item_types, scorer_names in CASES:
        context = _context(run_settings, product, item_types, batch_sizes[0],
                           thread_counts[0])
        for threads in thread_counts:
            for batch_size in batch_sizes:
                context.config = replace(context.config, batch_size=batch_size,
                                         num_threads=threads)
                for scorer in make_baselines(scorer_names):
                    timing = evaluate_scorers(context, [scorer]).timings[scorer.name]
                    results.append({
                        "case": f"{run_settings}/{product}", "items": context.num_items,
                        "scorer": scorer.name, "batch_size": batch_size,
                        "threads": threads, "users": timing["users"],
                        "fit_s": timing["fit_s"], "score_s": timing["score_s"],
                        "s_per_1000_users": 1000.0 * timing["score_s"] / timing["users"],
                    })
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="also run every stage for every run settings document and seed")
    parser.add_argument("--skip-timing", action="store_true",
                        help="skip part 1, the ranking time per 1,000 users")
    parser.add_argument("--configs", nargs="+", default=["movielens-1m", "lastfm-2k"],
                        help="run settings names or YAML files for --full")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="seeds for --full")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=JSON",
                        help="dotted run settings override for --full, for example "
                             "hgnn.max_epochs=2 (the value is parsed as JSON)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gfm-eval-benchmark"),
                        help="working folder of --full (default %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="--full reuses the seeds an earlier run in --workdir "
                             "finished with the same settings")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256, 1024],
                        help="user batch sizes of part 1")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2],
                        help="torch thread counts of part 1")
    args = parser.parse_args()
    configure_logging("WARNING")

    print(f"torch {torch.__version__}, default torch threads {torch.get_num_threads()}")
    if not args.skip_timing:
        rows = time_ranking(args.batch_sizes, args.threads)
        print("\n1. Full ranking with each run settings document's split")
        print(f"{'case':<20}{'items':>7}{'scorer':>12}{'batch':>7}{'threads':>9}"
              f"{'users':>7}{'fit s':>8}{'score s':>9}{'s / 1000 users':>16}")
        for row in rows:
            print(f"{row['case']:<20}{row['items']:>7}{row['scorer']:>12}"
                  f"{row['batch_size']:>7}{row['threads']:>9}{row['users']:>7}"
                  f"{row['fit_s']:>8.2f}{row['score_s']:>9.2f}"
                  f"{row['s_per_1000_users']:>16.2f}")

    if args.full:
        from gfm.evaluation.experiments import run_experiments

        configure_logging("INFO")
        from gfm.evaluation.cli import parse_overrides

        try:
            overrides = parse_overrides(args.override)
        except ValueError as error:
            parser.error(str(error))
        started = time.monotonic()
        document = run_experiments(args.configs, args.seeds, args.workdir,
                                   overrides=overrides,
                                   evaluation_overrides={"num_threads": 1},
                                   resume=args.resume)
        wall = time.monotonic() - started
        print(f"\n2. Full runner: {args.configs}, seeds {args.seeds}, overrides "
              f"{overrides}: {wall:.0f} s wall")
        if document["resumed"]:
            print(f"reused from an earlier run: {document['resumed']}")
        print(f"{'protocol':<14}{'product':<10}{'model':<12}{'users':>7}"
              f"{'HR@10 warm':>20}")
        for row in document["rows"]:
            if row["slice"] == "warm":
                figure = f"{row['hr@10']:.4f} ± {row['hr@10_std']:.4f}"
                print(f"{row['protocol']:<14}{row['product']:<10}{row['model']:<12}"
                      f"{row['num_users']:>7.0f}{figure:>20}")
        print("\nstage seconds per protocol and seed")
        for run, stages in document["stage_seconds"].items():
            print(run, {name: round(seconds, 1) for name, seconds in stages.items()})
        print(f"\nreport: {args.workdir / 'report'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
