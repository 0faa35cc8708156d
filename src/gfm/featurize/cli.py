"""``gfm featurize``: embed a dataset folder's items from the command line."""

from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING, Any

import yaml

from gfm import storage
from gfm.featurize.config import ENGINES

if TYPE_CHECKING:
    from gfm.featurize import FeaturizeConfig

logger = logging.getLogger(__name__)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``featurize`` subcommand."""
    parser = subparsers.add_parser(
        "featurize",
        help="embed every item of a dataset folder with an LLM",
        description="Render each item of DATASET/items.parquet to text, embed it and "
                    "write an ItemEmbeddings folder (embeddings.npy, items.parquet, "
                    "metadata.json) to OUTPUT.",
    )
    parser.add_argument("dataset", help="dataset folder (local or gs://) with items.parquet")
    parser.add_argument("output", help="folder (local or gs://) to write the embeddings to")
    parser.add_argument(
        "--split", default=None,
        help="the dataset's split folder; item tag text built from tag applications "
             "(Last.fm artists) then uses only the training split",
    )
    parser.add_argument(
        "--config", default=None,
        help="YAML or JSON settings file; its 'featurize' section is used when present, "
             "else the whole document",
    )
    parser.add_argument("--engine", choices=ENGINES,
                        default=None, help="embedding engine (overrides the file)")
    parser.add_argument("--model", default=None, help="model folder or name (overrides the file)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="texts per engine call (overrides the file)")
    parser.add_argument("--cache-uri", default=None,
                        help="folder of the incremental embedding cache (overrides the file)")
    parser.add_argument("--ray", action="store_true",
                        help="embed on Ray Data with an actor pool of engines")
    parser.add_argument("--num-actors", type=int, default=None,
                        help="Ray actor pool size (with --ray; overrides the file)")
    parser.set_defaults(func=run_featurize)


def load_settings(path: str | None) -> dict[str, Any]:
    """Read the featurize settings of a YAML or JSON file; ``{}`` without one."""
    if path is None:
        return {}
    document = yaml.safe_load(storage.read_text(path)) or {}
    if not isinstance(document, dict):
        raise ValueError(f"settings file {path} must contain a mapping, got {document!r}")
    section = document.get("featurize", document)
    return dict(section or {})


def build_config(args: argparse.Namespace) -> "FeaturizeConfig":
    """Merge the settings file and the command-line options.

    Raises:
        ValueError: on invalid settings, or ``--num-actors`` without Ray.
        OSError: if the settings file cannot be read.
        yaml.YAMLError: if it is not valid YAML.
    """
    from gfm.featurize import FeaturizeConfig

    values = load_settings(args.config)
    overrides = {"engine": args.engine, "model": args.model,
                 "batch_size": args.batch_size, "cache_uri": args.cache_uri}
    values.update({key: value for key, value in overrides.items() if value is not None})
    ray_values = FeaturizeConfig.ray_mapping(values.get("ray", {}))
    if args.ray:
        ray_values["enabled"] = True
    if args.num_actors is not None:
        if not ray_values.get("enabled"):
            raise ValueError(
                f"--num-actors {args.num_actors} sizes the Ray actor pool, but Ray is "
                "off; add --ray (or ray.enabled: true in the settings file) or drop "
                "--num-actors"
            )
        ray_values["num_actors"] = args.num_actors
    if ray_values:
        values["ray"] = ray_values
    return FeaturizeConfig.from_dict(values)


def run_featurize(args: argparse.Namespace) -> int:
    """Run ``gfm featurize`` and return its exit code: 2 on invalid settings or
    input, which are logged as one line."""
    from gfm.featurize import featurize_dataset

    try:
        config = build_config(args)
    except (OSError, ValueError, yaml.YAMLError) as error:
        logger.error("invalid featurize settings: %s", error)
        return 2
    try:
        embeddings = featurize_dataset(args.dataset, args.output, config, args.split)
    except (OSError, ValueError) as error:
        logger.error("featurize failed: %s", error)
        return 2
    summary = {key: embeddings.metadata[key] for key in (
        "engine", "model", "dim", "embedded", "reused", "truncated", "items_per_second")}
    print(json.dumps(dict(summary, num_items=len(embeddings), output=args.output), indent=2))
    return 0
