"""``gfm twotower train``, ``gfm twotower export`` and ``gfm twotower check``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``twotower`` subcommands to the ``gfm`` parser."""
    twotower = subparsers.add_parser(
        "twotower", help="train per-product two-tower models and export the bundle",
        description="Train one two-tower model per product and pack the serving bundle.",
    )
    commands = twotower.add_subparsers(dest="twotower_command", metavar="COMMAND")
    commands.required = True

    train = commands.add_parser(
        "train", help="train one product's model from artifact folders",
        description="Train one product's two-tower model and write its model folder.",
    )
    _add_input_arguments(train)
    train.add_argument("--product", required=True, help="product name, e.g. movies")
    train.add_argument("--item-types", nargs="+", default=None,
                       help="item types of the product (default: the product's entry "
                            "in the twotower.products section of --settings)")
    train.add_argument("--settings", default=None,
                       help="run settings YAML; its twotower section gives the defaults")
    train.add_argument("--config", default=None,
                       help="JSON mapping of TwoTowerConfig settings, applied over --settings")
    train.add_argument("--out", required=True, help="output model folder or gs:// prefix")
    train.set_defaults(func=_train)

    export = commands.add_parser(
        "export", help="pack product model folders into a serving bundle",
        description="Write the serving bundle of one or more product model folders.",
    )
    export.add_argument("--model", dest="models", action="append", required=True,
                        help="a product model folder; repeat once per product")
    _add_input_arguments(export)
    export.add_argument("--model-version", required=True,
                        help="the version string served models report")
    export.add_argument("--out", required=True, help="output bundle folder or gs:// prefix")
    export.add_argument("--history-parts", nargs="+", choices=("train", "valid"),
                        default=["train", "valid"],
                        help="split parts served as known users' histories; match the "
                             "evaluation's history_parts (default: train valid)")
    export.set_defaults(func=_export)

    check = commands.add_parser(
        "check", help="load a serving bundle and print its summary",
        description="Load a serving bundle with every consistency check; exit 1 if "
                    "it is broken.",
    )
    check.add_argument("bundle", help="bundle folder or gs:// prefix")
    check.set_defaults(func=_check)


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="Dataset folder")
    parser.add_argument("--split", required=True, help="Split folder")
    parser.add_argument("--llm", default=None, help="LLM ItemEmbeddings folder")
    parser.add_argument("--hgnn", default=None, help="HGNN ItemEmbeddings folder")


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], list[str] | None]:
    """Return the TwoTowerConfig mapping and the item types from the arguments."""
    import yaml

    section: dict[str, Any] = {}
    if args.settings:
        with open(args.settings, encoding="utf-8") as handle:
            section = dict((yaml.safe_load(handle) or {}).get("twotower") or {})
    products = section.pop("products", None) or {}
    item_types = args.item_types or products.get(args.product)
    if args.config:
        try:
            overrides = json.loads(args.config)
        except json.JSONDecodeError as error:
            raise ValueError(f"--config is not JSON: {error}") from error
        if not isinstance(overrides, dict):
            raise ValueError(f"--config must be a JSON mapping, got {overrides!r}")
        section.update(overrides)
    return section, item_types


def _train(args: argparse.Namespace) -> int:
    from gfm.twotower.config import TwoTowerConfig
    from gfm.twotower.stage import train_product

    try:
        values, item_types = _settings(args)
        config = TwoTowerConfig.from_dict(values)
    except (OSError, ValueError) as error:
        print(f"gfm twotower train: invalid settings: {error}", file=sys.stderr)
        return 2
    if not item_types:
        print(f"gfm twotower train: no item types for product {args.product!r}; pass "
              f"--item-types or a --settings file that lists the product", file=sys.stderr)
        return 2
    model = train_product(args.dataset, args.split, args.llm, args.hgnn, args.product,
                          item_types, config, args.out)
    summary = {key: model.metrics[key] for key in (
        "product", "best_epoch", "best_valid_recall", "popularity_valid_recall",
        "train_seconds", "examples_per_second", "counts", "dropped")}
    print(json.dumps(summary, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from gfm.twotower.stage import export_products

    products = export_products(args.models, args.dataset, args.split, args.llm, args.hgnn,
                               args.model_version, args.out, args.history_parts)
    print(json.dumps({"bundle": args.out, "model_version": args.model_version,
                      "products": sorted(products)}, indent=2))
    return 0


def _check(args: argparse.Namespace) -> int:
    from gfm.twotower.bundle import Bundle, BundleError

    try:
        bundle = Bundle.load(args.bundle)
    except BundleError as error:
        logger.error("bundle %s failed its checks: %s", args.bundle, error)
        print(f"gfm twotower check: {error}", file=sys.stderr)
        return 1
    summary = {
        "bundle": args.bundle,
        "model_version": bundle.model_version,
        "format_version": bundle.format_version,
        "items": len(bundle.item_index),
        "embeddings": {name: e.dim for name, e in bundle.embeddings.items()},
        "products": {
            name: {"item_types": model.item_types, "items": len(model.item_ids),
                   "dim": model.dim, "history_source": model.encoder.source,
                   "best_valid_recall": model.metrics.get("best_valid_recall")}
            for name, model in bundle.products.items()
        },
    }
    print(json.dumps(summary, indent=2))
    return 0
