"""``gfm hgnn`` subcommands: train, embed, and print a RayJob."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from gfm import settings, storage

logger = logging.getLogger(__name__)


def load_settings(path: str | None, inline: str | None) -> dict[str, Any]:
    """Merge HGNN settings from a YAML or JSON file and an inline JSON object.

    A file may hold the settings themselves or a run's settings with an
    ``hgnn`` section; inline values override the file's.

    Raises:
        ValueError: if either is not a mapping.
    """
    import yaml

    values: dict[str, Any] = {}
    if path:
        loaded = yaml.safe_load(storage.read_text(path)) or {}
        if not isinstance(loaded, dict):
            raise ValueError(
                f"settings file {path} must hold a mapping, got {type(loaded).__name__}"
            )
        values = dict(loaded.get("hgnn", loaded))
    if inline:
        extra = json.loads(inline)
        if not isinstance(extra, dict):
            raise ValueError(f"--config-json must be a JSON object, got {inline!r}")
        values.update(extra)
    return values


def _train(args: argparse.Namespace) -> int:
    from gfm.hgnn import HGNNConfig, train_hgnn

    config = HGNNConfig.from_dict(load_settings(args.config, args.config_json))
    result = train_hgnn(args.graph, args.out, config, resume_from=args.resume_from)
    print(json.dumps(result.metrics["summary"], indent=2, default=str))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from gfm.graph import load_graph
    from gfm.hgnn import embed_items, load_model

    model = load_model(args.model)
    embeddings = embed_items(model, load_graph(args.graph).data)
    embeddings.save(args.out)
    print(
        json.dumps(
            {"num_items": len(embeddings), "dim": embeddings.dim, "out": args.out}
        )
    )
    return 0


def _rayjob(args: argparse.Namespace) -> int:
    import yaml

    from gfm.hgnn import HGNNConfig, kuberay

    config = HGNNConfig.from_dict(load_settings(args.config, args.config_json))
    entrypoint = kuberay.train_entrypoint(
        args.graph, args.out, config.non_defaults(), args.resume_from
    )
    body = kuberay.build_rayjob(
        args.name or kuberay.rayjob_name(config.cluster.name_prefix),
        entrypoint,
        config.cluster,
        image=config.cluster.image or settings.image("train"),
        use_gpu=config.use_gpu,
        suspend=args.suspend,
    )
    sys.stdout.write(yaml.safe_dump(body, sort_keys=False))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``gfm hgnn train``, ``gfm hgnn embed`` and ``gfm hgnn rayjob``."""
    hgnn = subparsers.add_parser("hgnn", help="train the HGNN and embed items")
    commands = hgnn.add_subparsers(dest="hgnn_command", metavar="COMMAND")
    commands.required = True

    def add_settings(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--config",
            help="YAML or JSON file of HGNN settings "
            "(or a run's settings with an hgnn section)",
        )
        parser.add_argument(
            "--config-json", help="JSON object of settings that override the file's"
        )

    train = commands.add_parser(
        "train", help="train on a graph folder, write model, embeddings and metrics"
    )
    train.add_argument(
        "--graph", required=True, help="graph folder (graph.pt), local or gs://"
    )
    train.add_argument("--out", required=True, help="output folder, local or gs://")
    train.add_argument(
        "--resume-from",
        help="checkpoint, model or HGNN output folder to warm-start from",
    )
    add_settings(train)
    train.set_defaults(func=_train)

    embed = commands.add_parser(
        "embed", help="embed every item of a graph with a trained model"
    )
    embed.add_argument(
        "--model", required=True, help="model folder (model.pt, config.json)"
    )
    embed.add_argument("--graph", required=True, help="graph folder (graph.pt)")
    embed.add_argument("--out", required=True, help="output ItemEmbeddings folder")
    embed.set_defaults(func=_embed)

    rayjob = commands.add_parser(
        "rayjob", help="print the KubeRay RayJob that trains on a cluster, as YAML"
    )
    rayjob.add_argument("--graph", required=True, help="graph folder, gs://")
    rayjob.add_argument("--out", required=True, help="output folder, gs://")
    rayjob.add_argument("--resume-from", help="folder to warm-start from")
    rayjob.add_argument("--name", help="RayJob name (default: prefix and UTC time)")
    rayjob.add_argument(
        "--suspend",
        action="store_true",
        help="create it suspended (spec.suspend), to start it later",
    )
    add_settings(rayjob)
    rayjob.set_defaults(func=_rayjob)
