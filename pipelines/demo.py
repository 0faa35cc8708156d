"""Helpers of ``scripts/demo.sh``: pick a real user and print rankings with titles.

Usage:

* ``python -m gfm.pipelines.demo pick BUNDLE`` prints a user id and the
  bundle's product names on one line;
* ``python -m gfm.pipelines.demo show RUN_JSON PREDICTION_JSON`` prints the
  user's recent history and the recommended items with their titles.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from gfm import storage

logger = logging.getLogger(__name__)

# A demo user has at least this many training items in every product.
MIN_HISTORY = 5


def pick_user(bundle: Any) -> str:
    """Return a user with history in every product of ``bundle``.

    Among the users with at least :data:`MIN_HISTORY` training items of each
    product's item types, it returns the one with the median total history
    length (ties broken by user id), so the demo shows a typical user rather
    than the heaviest.

    Args:
        bundle: a loaded ``gfm.twotower.bundle.Bundle``.

    Raises:
        ValueError: if no user qualifies.
    """
    histories = storage.read_table(storage.join(bundle.uri, "histories.parquet"),
                                   columns=["user_id", "item_id"]).to_pandas()
    item_types = dict(zip(*_item_types(bundle)))
    histories["item_type"] = histories["item_id"].map(item_types)

    qualified = None
    for name, product in bundle.products.items():
        rows = histories[histories["item_type"].isin(product.item_types)]
        counts = rows.groupby("user_id").size()
        users = set(counts[counts >= MIN_HISTORY].index)
        qualified = users if qualified is None else qualified & users
    if not qualified:
        raise ValueError(
            f"no user of bundle {bundle.uri} has {MIN_HISTORY} or more training "
            f"items in every product {sorted(bundle.products)}"
        )
    lengths = histories[histories["user_id"].isin(qualified)].groupby("user_id").size()
    ordered = sorted(lengths.items(), key=lambda pair: (pair[1], pair[0]))
    return str(ordered[len(ordered) // 2][0])


def _item_types(bundle: Any) -> tuple[list[str], list[str]]:
    embeddings = next(iter(bundle.embeddings.values()))
    return embeddings.item_ids, embeddings.item_types


def titles_of(dataset_dir: str | Path) -> dict[str, str]:
    """Return the title of every item of a Dataset folder, by item id."""
    table = storage.read_table(storage.join(dataset_dir, "items.parquet"),
                               columns=["item_id", "title"])
    return dict(zip(table.column("item_id").to_pylist(), table.column("title").to_pylist()))


def format_prediction(
    prediction: dict[str, Any],
    titles: dict[str, str],
    history: list[str] | None,
    shown_history: int = 5,
) -> str:
    """Return a plain-text table of one recommendation response.

    Args:
        prediction: one response instance (``product``, ``item_ids``,
            ``scores``, ``model_version``, ``fallback``...).
        titles: item id to title.
        history: the user's training items, oldest first, if known.
        shown_history: how many of the most recent history items to list.
    """
    lines = [
        f"product {prediction['product']} for user {prediction.get('user_id')} "
        f"(model version {prediction.get('model_version')}"
        + (f", fallback {prediction['fallback']}" if prediction.get("fallback") else "")
        + ")"
    ]
    if history:
        lines.append(f"  recent history ({len(history)} items in all):")
        for item_id in history[-shown_history:]:
            lines.append(f"    {item_id:<16} {titles.get(item_id, '?')}")
    lines.append("  recommended:")
    for rank, (item_id, score) in enumerate(
        zip(prediction["item_ids"], prediction["scores"]), start=1
    ):
        lines.append(f"    {rank:>2}. {item_id:<16} {score:7.3f}  {titles.get(item_id, '?')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the ``pick`` or ``show`` helper; see the module docstring."""
    from gfm.logging_setup import configure_logging
    from gfm.twotower.bundle import Bundle

    parser = argparse.ArgumentParser(prog="python -m gfm.pipelines.demo")
    commands = parser.add_subparsers(dest="command", required=True)
    pick = commands.add_parser("pick", help="print a demo user and the product names")
    pick.add_argument("bundle", help="serving bundle folder")
    show = commands.add_parser("show", help="print one response with titles")
    show.add_argument("run_json", help="the --output-json file of gfm run --local")
    show.add_argument("prediction_json", help="the output of gfm recommend")
    args = parser.parse_args(argv)
    configure_logging("WARNING")

    if args.command == "pick":
        bundle = Bundle.load(args.bundle)
        print(pick_user(bundle), *bundle.products)
        return 0

    run = json.loads(Path(args.run_json).read_text(encoding="utf-8"))
    prediction = json.loads(Path(args.prediction_json).read_text(encoding="utf-8"))
    dataset_dir = next(
        path for key, path in run["outputs"].items() if key.endswith("ingest/dataset")
    )
    bundle = Bundle.load(run["bundle_dir"])
    history = bundle.history(prediction["user_id"]) if prediction.get("user_id") else None
    if history:
        product_types = set(bundle.products[prediction["product"]].item_types)
        item_types = dict(zip(*_item_types(bundle)))
        history = [i for i in history if item_types.get(i) in product_types]
    print(format_prediction(prediction, titles_of(dataset_dir), history))
    return 0


if __name__ == "__main__":
    sys.exit(main())
