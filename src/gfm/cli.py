"""The ``gfm`` command line.

Each stage adds its subcommands from its own module: a module listed in
``COMMAND_MODULES`` defines ``add_commands(subparsers)``, which adds parsers
whose ``func`` default takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from gfm import __version__, settings
from gfm.logging_setup import configure_logging

logger = logging.getLogger(__name__)

COMMAND_MODULES: tuple[str, ...] = ("gfm.serving.cli", "gfm.featurize.cli", "gfm.graph.cli",
                                    "gfm.data.cli", "gfm.pipelines.cli", "gfm.hgnn.cli",
                                    "gfm.evaluation.cli", "gfm.twotower.cli")


def _show_settings(args: argparse.Namespace) -> int:
    values = {
        "version": __version__,
        "data_dir": str(settings.data_dir()),
        "cache_dir": str(settings.cache_dir()),
        "crds_dir": str(settings.crds_dir()) if settings.crds_dir() else None,
        "images": {kind: settings.image(kind) for kind in settings.IMAGE_KINDS},
    }
    print(json.dumps(values, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every stage's subcommands."""
    parser = argparse.ArgumentParser(
        prog="gfm",
        description="Graph foundation model for personalization (2T-HGNN) on Kubeflow.",
    )
    parser.add_argument("--version", action="version", version=f"gfm {__version__}")
    parser.add_argument(
        "--log-level", default=None,
        help="logging level of the gfm logger (default: GFM_LOG_LEVEL or INFO)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True

    show = subparsers.add_parser("settings", help="print the settings in effect")
    show.set_defaults(func=_show_settings)

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``gfm`` command and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
