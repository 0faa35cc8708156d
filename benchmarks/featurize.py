"""Benchmark item featurization: items per second per engine and batch size.

Embeds the same rendered texts with every requested engine, at several batch
sizes, in one run:

* real items: MovieLens-1M movies, Last.fm-2k artists and tags (a fixed
  sample of ``--real-per-type`` each, from ``GFM_DATA_DIR``);
* a synthetic catalog of ``--synthetic-items`` items from
  ``gfm.data.synthetic``. Every item is rendered; ``--synthetic-sample`` of
  them are embedded per variant of the sweep (0 embeds all of them in every
  variant), and ``--catalog-batch-size`` adds one pass over the whole
  catalog at that batch size for each engine of ``--catalog-engines``, so
  the catalog's rate is measured, not extrapolated from the sample.

It also times rendering and one cold and one warm run of ``featurize_items``
with the cache on ``--cache-sample`` of the embedded synthetic items, and
prints a table. Example::

    python benchmarks/featurize.py
    python benchmarks/featurize.py --engines vllm --device cuda --batch-sizes 256,1024
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

from gfm.data import load_dataset
from gfm.data.item_text import items_for_split
from gfm.data.splits import split_dataset
from gfm.data.synthetic import SyntheticConfig, generate_dataset
from gfm.featurize import DEFAULT_TEMPLATES, FeaturizeConfig, featurize_items, render_texts
from gfm.featurize.engine import create_engine
from gfm.featurize.models import resolve_model
from gfm.logging_setup import configure_logging
from gfm.pipelines.run_config import load_run_config

# The synthetic generator's item types, rendered with the movie template.
SYNTHETIC_TYPES = {"movie": 0.6, "podcast": 0.4}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sentence-transformers,vllm",
                        help="comma-separated engines to compare")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="device of every engine")
    parser.add_argument("--batch-sizes", default="16,64,256",
                        help="comma-separated texts per engine call")
    parser.add_argument("--real-per-type", type=int, default=500,
                        help="real items sampled per item type (0 means all)")
    parser.add_argument("--synthetic-items", type=int, default=100_000,
                        help="items in the synthetic catalog, all rendered")
    parser.add_argument("--synthetic-sample", type=int, default=1500,
                        help="synthetic texts embedded per variant (0 means all)")
    parser.add_argument("--catalog-batch-size", type=int, default=64,
                        help="batch size of one pass per engine over the whole synthetic "
                             "catalog (0 skips the pass)")
    parser.add_argument("--catalog-engines", default="sentence-transformers,vllm",
                        help="comma-separated engines that embed the whole synthetic "
                             "catalog once")
    parser.add_argument("--catalog-threads", type=int, default=1,
                        help="torch intra-op threads of the sentence-transformers "
                             "whole-catalog pass")
    parser.add_argument("--cache-sample", type=int, default=900,
                        help="synthetic items of the cold and warm cache runs")
    parser.add_argument("--torch-threads", default="1,2",
                        help="comma-separated torch intra-op thread counts to compare for "
                             "sentence-transformers; vLLM runs in its own process with "
                             "its own threads")
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    return parser.parse_args()


def real_items(per_type: int) -> pd.DataFrame:
    """Sample real items, with tag text from the shipped split's training part.

    That is the text the pipeline's featurize step embeds.
    """
    parts = []
    for name in ("movielens-1m", "lastfm-2k"):
        dataset = load_dataset(name)
        split = split_dataset(dataset, load_run_config(name).split)
        items, _ = items_for_split(dataset, split)
        for _, group in items.groupby("item_type", sort=True):
            if per_type and len(group) > per_type:
                group = group.sample(n=per_type, random_state=0)
            parts.append(group)
    return pd.concat(parts, ignore_index=True)


def synthetic_items(count: int) -> pd.DataFrame:
    sizes = {t: max(1, int(count * share)) for t, share in SYNTHETIC_TYPES.items()}
    config = SyntheticConfig(items_per_type=sizes, num_users=100, num_interactions=1000)
    return generate_dataset(config).items


def time_embedding(engine: Any, texts: list[str], batch_size: int) -> float:
    """Embed ``texts`` in length-sorted batches, as featurize_items does, and
    return the wall time in seconds."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    started = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        engine.embed([texts[row] for row in order[start:start + batch_size]])
    return time.perf_counter() - started


def mean_tokens(texts: list[str], model_path: str) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    return float(np.mean([len(ids) for ids in tokenizer(texts)["input_ids"]]))


def main() -> None:
    args = parse_args()
    configure_logging("WARNING")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    catalog_engines = {e.strip() for e in args.catalog_engines.split(",") if e.strip()}
    templates = {**DEFAULT_TEMPLATES, "podcast": DEFAULT_TEMPLATES["movie"]}
    model = resolve_model(None)
    import torch

    thread_counts = [int(t) for t in args.torch_threads.split(",")]
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                           "platform": platform.platform(),
                                           "torch_default_threads": torch.get_num_threads()},
                               "args": vars(args), "render": {}, "embed": [], "load": {}}

    real = real_items(args.real_per_type)
    started = time.perf_counter()
    real_texts = render_texts(real, templates)
    results["render"]["real"] = (len(real), time.perf_counter() - started)

    synthetic = synthetic_items(args.synthetic_items)
    started = time.perf_counter()
    synthetic_texts = render_texts(synthetic, templates)
    results["render"]["synthetic"] = (len(synthetic), time.perf_counter() - started)
    sample = args.synthetic_sample or len(synthetic_texts)
    rng = np.random.default_rng(0)
    picked = rng.choice(len(synthetic_texts), size=min(sample, len(synthetic_texts)),
                        replace=False)
    text_sets = {"real": real_texts, "synthetic": [synthetic_texts[i] for i in picked]}
    tokens = {name: mean_tokens(texts, model.path) for name, texts in text_sets.items()}

    for engine_name in engines:
        config = FeaturizeConfig(engine=engine_name, device=args.device,
                                 batch_size=max(batch_sizes))
        started = time.perf_counter()
        engine = create_engine(config, model)
        results["load"][engine_name] = time.perf_counter() - started
        threads = thread_counts if engine_name == "sentence-transformers" else [None]
        try:
            engine.embed(["warm-up text"] * 8)
            for thread_count in threads:
                if thread_count:
                    torch.set_num_threads(thread_count)
                for batch_size in batch_sizes:
                    for set_name, texts in text_sets.items():
                        seconds = time_embedding(engine, texts, batch_size)
                        row = {"engine": engine_name, "threads": thread_count or "own",
                               "texts": set_name, "count": len(texts),
                               "batch_size": batch_size, "seconds": seconds,
                               "items_per_second": len(texts) / seconds}
                        results["embed"].append(row)
                        print_row(row)
            if args.catalog_batch_size and engine_name in catalog_engines:
                if engine_name == "sentence-transformers":
                    torch.set_num_threads(args.catalog_threads)
                seconds = time_embedding(engine, synthetic_texts, args.catalog_batch_size)
                row = {"engine": engine_name,
                       "threads": args.catalog_threads
                       if engine_name == "sentence-transformers" else "own",
                       "texts": "synthetic, whole catalog", "count": len(synthetic_texts),
                       "batch_size": args.catalog_batch_size, "seconds": seconds,
                       "items_per_second": len(synthetic_texts) / seconds}
                results["embed"].append(row)
                print_row(row)
        finally:
            engine.close()

    cache_rows = np.sort(picked[:max(1, args.cache_sample)])
    cache_items = synthetic.iloc[cache_rows].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as cache_dir:
        config = FeaturizeConfig(engine=engines[0], device=args.device,
                                 batch_size=max(batch_sizes), templates=templates,
                                 cache_uri=cache_dir)
        cold = featurize_items(cache_items, config).metadata
        warm = featurize_items(cache_items, config).metadata
    results["cache"] = {"items": len(cache_items), "cold_seconds": cold["total_seconds"],
                        "warm_seconds": warm["total_seconds"],
                        "warm_reused": warm["reused"]}

    print_table(results, tokens)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)


def print_row(row: dict[str, Any]) -> None:
    print(f"{row['engine']:>22} threads {row['threads']:>4} {row['texts']:>9} "
          f"({row['count']} texts) batch {row['batch_size']:>5}: "
          f"{row['items_per_second']:8.1f} items/s", flush=True)


def print_table(results: dict[str, Any], tokens: dict[str, float]) -> None:
    print()
    print(f"machine: {results['machine']}")
    for name, (count, seconds) in results["render"].items():
        print(f"render {name}: {count} items in {seconds:.2f} s "
              f"({count / seconds:,.0f} items/s)")
    for name, value in tokens.items():
        print(f"mean tokens per {name} text: {value:.1f}")
    for name, seconds in results["load"].items():
        print(f"load {name}: {seconds:.1f} s")
    print()
    print("| engine | threads | texts | count | batch size | seconds | items/s |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for row in results["embed"]:
        print(f"| {row['engine']} | {row['threads']} | {row['texts']} | {row['count']} "
              f"| {row['batch_size']} | {row['seconds']:.1f} | {row['items_per_second']:.1f} |")
    cache = results["cache"]
    print()
    print(f"featurize_items on {cache['items']} synthetic items with the cache: cold "
          f"{cache['cold_seconds']:.1f} s, warm rerun {cache['warm_seconds']:.1f} s "
          f"({cache['warm_reused']} reused)")


if __name__ == "__main__":
    main()
