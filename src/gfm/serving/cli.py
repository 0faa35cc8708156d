"""``gfm serve`` and ``gfm recommend``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from gfm.serving.config import KSERVE_MODEL_DIR, ServingConfig

logger = logging.getLogger(__name__)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the serving subcommands to the ``gfm`` parser."""
    serve = subparsers.add_parser(
        "serve", help="serve a bundle with KServe's V1 and V2 REST protocols",
        description="Serve every product of a serving bundle on one HTTP port.",
    )
    serve.add_argument("--bundle", default=KSERVE_MODEL_DIR,
                       help=f"bundle folder or gs:// prefix (default: {KSERVE_MODEL_DIR})")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default: 127.0.0.1; 0.0.0.0 inside a container)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (default: 8080)")
    serve.add_argument("--name", default=None,
                       help="model name in request paths (default: the config's, gfm)")
    serve.add_argument("--config", default=None,
                       help="JSON object of ServingConfig settings, inline or @FILE")
    serve.add_argument("--access-log", action="store_true",
                       help="log one line per request")
    serve.set_defaults(func=_serve)

    recommend = subparsers.add_parser(
        "recommend", help="ask a running server for recommendations",
        description="Send one instance to a recommendation server and print the response.",
    )
    recommend.add_argument("--url", default="http://127.0.0.1:8080", help="server address")
    recommend.add_argument("--name", default="gfm", help="model name (default: gfm)")
    recommend.add_argument("--product", required=True, help="product to rank for")
    recommend.add_argument("--k", type=int, default=10, help="number of items (default: 10)")
    recommend.add_argument("--user-id", default=None, help="a user of the training window")
    recommend.add_argument("--history", default="",
                           help="comma-separated item ids the user just consumed, oldest first")
    recommend.add_argument("--item-types", default="",
                           help="comma-separated item types to return (default: all)")
    recommend.add_argument("--include-consumed", action="store_true",
                           help="allow items of the history in the results")
    recommend.add_argument("--v2", action="store_true",
                           help="use the Open Inference Protocol V2 instead of V1")
    recommend.add_argument("--timeout", type=float, default=10.0,
                           help="HTTP timeout in seconds (default: 10)")
    recommend.set_defaults(func=_recommend)


def _serve(args: argparse.Namespace) -> int:
    from gfm.serving.server import serve

    try:
        settings = _config_mapping(args.config)
        settings["bundle_uri"] = args.bundle
        if args.name:
            settings["model_name"] = args.name
        config = ServingConfig.from_dict(settings)
    except (OSError, ValueError) as error:
        # json.JSONDecodeError is a ValueError.
        logger.error("invalid --config %r: %s", args.config, error)
        return 2
    serve(config, host=args.host, port=args.port, access_log=args.access_log)
    return 0


def _config_mapping(value: str | None) -> dict:
    if not value:
        return {}
    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    mapping = json.loads(text)
    if not isinstance(mapping, dict):
        raise ValueError(f"expected a JSON object, got {type(mapping).__name__}")
    return mapping


def _recommend(args: argparse.Namespace) -> int:
    import httpx

    from gfm.serving.client import RecommendClient, RecommendError

    instance: dict = {"product": args.product, "k": args.k,
                      "exclude_consumed": not args.include_consumed}
    if args.user_id:
        instance["user_id"] = args.user_id
    history = [i for i in args.history.split(",") if i]
    if history:
        instance["history"] = history
    item_types = [t for t in args.item_types.split(",") if t]
    if item_types:
        instance["item_types"] = item_types

    with RecommendClient(args.url, args.name, timeout_s=args.timeout) as client:
        try:
            send = client.recommend_v2 if args.v2 else client.recommend
            [prediction] = send([instance])
        except RecommendError as error:
            logger.error("request to %s failed: %s", args.url, error)
            return 1
        except httpx.HTTPError as error:
            logger.error("cannot reach %s: %s; is gfm serve running?", args.url, error)
            return 1
    json.dump(prediction, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
