"""Time the whole pipeline locally: a full run beside a foundation-reuse run.

The full run featurizes, builds the graph, trains the HGNN and publishes the
foundation layer; the reuse run imports it and retrains only the two-tower
models, as a daily run would. Both run through ``kfp.local`` on this
machine, one after the other, and the script prints each task's wall time
side by side.

Usage:
    python benchmarks/pipeline.py --config movielens-1m --out /tmp/gfm-bench
    python benchmarks/pipeline.py --config lastfm-2k --set hgnn.max_epochs=5
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import yaml

from gfm.logging_setup import configure_logging
from gfm.pipelines.local_run import LocalRun, run_local
from gfm.pipelines.run_config import load_run_config


def _step(task: str) -> str:
    # The compiler suffixes tasks repeated across branches with -2.
    return re.sub(r"-\d+$", "", task)


def _by_step(run: LocalRun) -> dict[str, float]:
    totals: dict[str, float] = {}
    for task, seconds in run.task_seconds.items():
        totals[_step(task)] = totals.get(_step(task), 0.0) + seconds
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="movielens-1m",
                        help="run settings name or YAML file (default: movielens-1m)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="replace one setting (repeatable)")
    parser.add_argument("--out", default=None,
                        help="folder for the runs' artifacts (default: a temporary folder)")
    args = parser.parse_args(argv)
    configure_logging("WARNING")

    overrides = {}
    for pair in args.overrides:
        key, _, value = pair.partition("=")
        overrides[key] = yaml.safe_load(value)
    overrides.setdefault("deploy.dry_run", True)
    run_config = load_run_config(args.config).with_overrides(overrides)
    out = Path(args.out or tempfile.mkdtemp(prefix="gfm-bench-"))
    foundation = str(out / "foundation")

    load_before = os.getloadavg()
    started = time.perf_counter()
    full = run_local(run_config, out / "pipeline-root", publish_foundation_uri=foundation)
    reuse = run_local(run_config, out / "pipeline-root", reuse_foundation=True,
                      foundation_uri=foundation)
    total = time.perf_counter() - started
    load_after = os.getloadavg()

    full_steps, reuse_steps = _by_step(full), _by_step(reuse)
    print(f"settings: {args.config} {overrides}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before[0]:.1f} before "
          f"and {load_after[0]:.1f} after")
    print(f"{'task':<22}{'full run (s)':>14}{'reuse run (s)':>15}")
    for step in full_steps:
        reuse_value = f"{reuse_steps[step]:.1f}" if step in reuse_steps else "-"
        print(f"{step:<22}{full_steps[step]:>14.1f}{reuse_value:>15}")
    print(f"{'pipeline wall time':<22}{full.seconds:>14.1f}{reuse.seconds:>15.1f}")
    print(f"both runs: {total:.1f} s; artifacts in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
