"""``gfm data ingest``, ``gfm data split`` and ``gfm data synth``."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import yaml

from gfm import storage

logger = logging.getLogger(__name__)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command and its subcommands to the ``gfm`` parser."""
    data = subparsers.add_parser(
        "data", help="load, split or generate datasets",
        description="Write Dataset and Split folders (local or gs://).")
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    commands.required = True

    ingest = commands.add_parser(
        "ingest", help="load and validate a dataset into a Dataset folder",
        description="Load a dataset by name, validate it and write items, "
                    "interactions, users and report.json.")
    ingest.add_argument("--dataset", required=True,
                        help="movielens-1m, lastfm-2k or files")
    ingest.add_argument("--out", required=True, help="output folder or gs:// prefix")
    ingest.add_argument("--path", default=None,
                        help="folder of contract tables (required for --dataset files)")
    ingest.add_argument("--data-dir", default=None,
                        help="folder of raw dataset folders (default: GFM_DATA_DIR)")
    ingest.add_argument("--strict", action="store_true",
                        help="fail on any row the validation would drop")
    ingest.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="loader option, for example tag_min_date=2004-01-01; "
                             "VALUE is read as YAML (repeatable)")
    ingest.set_defaults(func=_ingest)

    split = commands.add_parser(
        "split", help="split a Dataset folder into train, valid and test",
        description="Apply the split protocols of SplitConfig and write a Split folder.")
    split.add_argument("--dataset-uri", required=True, help="Dataset folder to split")
    split.add_argument("--config", default=None,
                       help="YAML or JSON file of SplitConfig settings, or a run "
                            "config with a split section (default: the defaults)")
    split.add_argument("--out", required=True, help="output folder or gs:// prefix")
    split.set_defaults(func=_split)

    synth = commands.add_parser(
        "synth", help="generate a synthetic Dataset folder",
        description="Stream a synthetic dataset with taste clusters and Zipf "
                    "popularity to a Dataset folder.")
    synth.add_argument("--config", default=None,
                       help="YAML or JSON file of SyntheticConfig settings; the flags "
                            "below override it")
    synth.add_argument("--num-interactions", type=int, default=None,
                       help="interaction rows")
    synth.add_argument("--num-users", type=int, default=None, help="users")
    synth.add_argument("--items-per-type", default=None, metavar="TYPE=N,...",
                       help="catalog sizes, for example movie=5000,podcast=2000")
    synth.add_argument("--num-clusters", type=int, default=None, help="taste clusters")
    synth.add_argument("--seed", type=int, default=None, help="random seed")
    synth.add_argument("--chunk-rows", type=int, default=None,
                       help="interactions per Parquet row group (default: 1,000,000)")
    synth.add_argument("--out", required=True, help="output folder or gs:// prefix")
    synth.set_defaults(func=_synth)


def read_settings(uri: str | None, section: str) -> dict[str, Any]:
    """Read a YAML or JSON mapping, or its ``section`` when it has one.

    Args:
        uri: File path or ``gs://`` URI; None gives an empty mapping.
        section: Key of the stage's section in a whole run config.

    Raises:
        ValueError: if the document is not a mapping.
    """
    if uri is None:
        return {}
    document = yaml.safe_load(storage.read_text(uri)) or {}
    if not isinstance(document, dict):
        raise ValueError(  # noqa: TRY004 (bad file contents are a ValueError here)
f"{uri} must hold a mapping of settings, got "
                         f"{type(document).__name__}")
    if isinstance(document.get(section), dict):
        return document[section]
    return document


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid --option {pair!r}; write KEY=VALUE")
        options[key] = yaml.safe_load(value)
    return options


def _parse_items_per_type(text: str) -> dict[str, int]:
    sizes = {}
    for part in text.split(","):
        name, sep, count = part.partition("=")
        if not sep or not count.strip().isdigit():
            raise ValueError(f"invalid --items-per-type entry {part!r}; write "
                             f"TYPE=N, for example movie=5000")
        sizes[name.strip()] = int(count)
    return sizes


def _ingest(args: argparse.Namespace) -> int:
    from gfm.data import load_dataset

    try:
        options = _parse_options(args.option)
        if args.path is not None:
            options["path"] = args.path
        dataset = load_dataset(args.dataset, args.data_dir, strict=args.strict, **options)
    except (OSError, ValueError) as error:
        logger.error("ingest of %s failed: %s", args.dataset, error)
        return 2
    dataset.save(args.out)
    print(json.dumps({"out": args.out, "rows_out": dataset.report["rows_out"],
                      "dropped": dataset.report["dropped"]}, indent=2))
    return 0


def _split(args: argparse.Namespace) -> int:
    from gfm.data import Dataset
    from gfm.data.splits import SplitConfig, split_dataset

    try:
        config = SplitConfig.from_dict(read_settings(args.config, "split"))
        dataset = Dataset.load(args.dataset_uri)
        result = split_dataset(dataset, config)
    except (OSError, ValueError) as error:
        logger.error("split of %s failed: %s", args.dataset_uri, error)
        return 2
    result.save(args.out)
    print(json.dumps({"out": args.out, "protocols": result.report["protocols"],
                      "counts": result.report["counts"],
                      "cold_items": len(result.cold_items)}, indent=2))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from gfm.data.synthetic import DEFAULT_CHUNK_ROWS, SyntheticConfig, write_synthetic

    try:
        settings = read_settings(args.config, "synthetic")
        overrides = {"num_interactions": args.num_interactions,
                     "num_users": args.num_users, "num_clusters": args.num_clusters,
                     "seed": args.seed}
        settings.update({key: value for key, value in overrides.items()
                         if value is not None})
        if args.items_per_type:
            settings["items_per_type"] = _parse_items_per_type(args.items_per_type)
        config = SyntheticConfig.from_dict(settings)
    except (OSError, ValueError) as error:
        logger.error("invalid synthetic settings: %s", error)
        return 2
    report = write_synthetic(config, args.out,
                             chunk_rows=args.chunk_rows or DEFAULT_CHUNK_ROWS)
    print(json.dumps({"out": args.out, "generation": report["generation"],
                      "counts": report["counts"]}, indent=2))
    return 0
