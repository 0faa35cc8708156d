"""``gfm evaluate run`` and ``gfm evaluate experiments``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommands to the ``gfm`` parser."""
    evaluate = subparsers.add_parser(
        "evaluate", help="compare product models with baselines by full ranking",
        description="Rank every product item for every test user with each model and "
                    "baseline, and write metrics.json, report.md and report.html.",
    )
    commands = evaluate.add_subparsers(dest="evaluate_command", metavar="COMMAND")
    commands.required = True

    run = commands.add_parser(
        "run", help="evaluate the artifact folders of one pipeline run",
        description="Evaluate ProductModel folders on a dataset and split folder.",
    )
    run.add_argument("--dataset", required=True, help="dataset folder (local or gs://)")
    run.add_argument("--split", required=True, help="split folder")
    run.add_argument("--llm", default=None, help="LLM ItemEmbeddings folder")
    run.add_argument("--hgnn", default=None, help="HGNN ItemEmbeddings folder")
    run.add_argument("--model", action="append", required=True, dest="models",
                     help="ProductModel folder; repeat for each product")
    run.add_argument("--config", default=None,
                     help="JSON mapping of EvaluationConfig settings, inline or @FILE")
    run.add_argument("--out", required=True, help="report folder or gs:// prefix")
    run.set_defaults(func=_run)

    experiments = commands.add_parser(
        "experiments", help="run every stage per seed and write the headline table",
        description="Load, split, featurize, build the graph, train the HGNN and the "
                    "two-tower models, and evaluate, for each run settings document "
                    "and seed; then average the seeds.",
    )
    experiments.add_argument("--configs", nargs="+", default=["movielens-1m", "lastfm-2k"],
                             help="shipped run settings names or YAML files")
    experiments.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                             help="seeds to average over (default: 0 1 2)")
    experiments.add_argument("--override", action="append", default=[],
                             metavar="KEY=JSON",
                             help="dotted run settings override, e.g. hgnn.max_epochs=2")
    experiments.add_argument("--workdir", required=True,
                             help="working folder for features, graphs and models")
    experiments.add_argument("--out", default=None,
                             help="report folder (default: WORKDIR/report)")
    experiments.add_argument("--resume", action="store_true",
                             help="reuse the seeds an earlier run in WORKDIR finished "
                                  "with the same settings (their seed.json)")
    experiments.set_defaults(func=_experiments)


def _run(args: argparse.Namespace) -> int:
    from gfm.evaluation.config import EvaluationConfig
    from gfm.evaluation.stage import evaluate_artifacts

    try:
        config = EvaluationConfig.from_dict(_json_mapping(args.config))
    except ValueError as error:
        print(f"gfm evaluate run: invalid --config: {error}", file=sys.stderr)
        return 2
    document = evaluate_artifacts(args.dataset, args.split, args.llm, args.hgnn,
                                  args.models, args.out, config)
    print(json.dumps({"deploy_gate": document["deploy_gate"], "out": args.out}, indent=2))
    return 0


def _experiments(args: argparse.Namespace) -> int:
    from gfm.evaluation.experiments import prepare_experiments, run_experiments

    try:
        overrides = parse_overrides(args.override)
        prepare_experiments(args.configs, args.seeds, args.workdir, args.out, overrides)
    except (ValueError, FileNotFoundError) as error:
        print(f"gfm evaluate experiments: {error}", file=sys.stderr)
        return 2
    document = run_experiments(args.configs, args.seeds, Path(args.workdir),
                               args.out, overrides, resume=args.resume)
    print(json.dumps({"deploy_gate": document["deploy_gate"],
                      "wall_seconds": round(document["wall_seconds"], 1)}, indent=2))
    return 0


def _json_mapping(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{value!r} is not JSON: {error}") from error
    if not isinstance(mapping, dict):
        raise ValueError(f"{value!r} is not a JSON object of settings")
    return mapping


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``KEY=JSON`` items into dotted run settings overrides.

    A value that is not JSON is kept as a string.

    Raises:
        ValueError: for an item without ``=`` or without a key.
    """
    overrides = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise ValueError(f"invalid --override {item!r}; use KEY=JSON, e.g. "
                             f"hgnn.max_epochs=2")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides
