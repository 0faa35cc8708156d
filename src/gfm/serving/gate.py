"""The promotion gate: a new bundle replaces the deployed one only if its
model cards' metrics are at least as good, product by product."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from gfm import storage
from gfm.serving.deploy_config import DeployConfig

logger = logging.getLogger(__name__)

BUNDLE_FILE = "bundle.json"


@dataclass
class BundleCards:
    """The version and per-product model cards of one serving bundle."""

    uri: str
    model_version: str
    cards: dict[str, dict[str, Any]]


@dataclass
class GateResult:
    """The gate's decision.

    Args:
        passed: whether the candidate may be deployed.
        reasons: one line per failed check; empty when ``passed``.
        products: per product, the candidate's and deployed metric values,
            the threshold and whether that product passed.
    """

    passed: bool
    reasons: list[str] = field(default_factory=list)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_bundle_cards(uri: str) -> BundleCards:
    """Read ``bundle.json`` and every product's ``model_card.json`` below ``uri``.

    Only these small files are read, not the item vectors, so the gate can
    run on a large bundle in GCS.

    Raises:
        FileNotFoundError: if ``bundle.json`` or a model card is missing.
        ValueError: if ``bundle.json`` lists no products.
    """
    manifest = storage.read_json(storage.join(uri, BUNDLE_FILE))
    products = manifest.get("products") or []
    if isinstance(products, dict):
        products = list(products)
    if not products:
        raise ValueError(f"{storage.join(uri, BUNDLE_FILE)} lists no products")
    cards = {
        product: storage.read_json(storage.join(uri, "products", product, "model_card.json"))
        for product in products
    }
    return BundleCards(uri=str(uri), model_version=str(manifest.get("model_version", "")),
                       cards=cards)


def lookup(card: Mapping[str, Any], path: str) -> Any:
    """Return the value at a dotted ``path`` of a model card, or ``None``."""
    value: Any = card
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def evaluate_gate(candidate: BundleCards, deployed: BundleCards | None,
                  config: DeployConfig) -> GateResult:
    """Compare a candidate bundle with the deployed one.

    Every candidate product must have a finite ``gate_metric`` of at least
    ``gate_min_value``. A product the deployed bundle also serves must reach
    ``deployed_value * (1 - gate_tolerance)``, and the two cards must agree
    on each ``gate_require_equal`` path (the same K, for example). A product
    of the deployed bundle that the candidate lacks fails the gate, because
    deploying would stop serving it.

    Args:
        candidate: cards of the bundle to deploy.
        deployed: cards of the bundle in service, or ``None`` if none is.
        config: gate settings.

    Returns:
        The decision with one reason per failed check.
    """
    reasons: list[str] = []
    products: dict[str, dict[str, Any]] = {}
    metric = config.gate_metric

    for product, card in sorted(candidate.cards.items()):
        value = lookup(card, metric)
        entry: dict[str, Any] = {"candidate": value, "deployed": None,
                                 "threshold": config.gate_min_value, "passed": False}
        products[product] = entry
        if not _is_number(value):
            reasons.append(f"product {product!r}: candidate model card has no numeric "
                           f"{metric} (got {value!r})")
            continue

        threshold = config.gate_min_value
        deployed_card = deployed.cards.get(product) if deployed else None
        if deployed_card is not None:
            mismatched = [
                f"{path} {lookup(card, path)!r} vs deployed {lookup(deployed_card, path)!r}"
                for path in config.gate_require_equal
                if lookup(card, path) != lookup(deployed_card, path)
            ]
            if mismatched:
                reasons.append(f"product {product!r}: metrics are not comparable: "
                               + "; ".join(mismatched))
                continue
            deployed_value = lookup(deployed_card, metric)
            entry["deployed"] = deployed_value
            if _is_number(deployed_value):
                threshold = max(threshold, deployed_value * (1.0 - config.gate_tolerance))

        entry["threshold"] = threshold
        if value < threshold:
            reasons.append(f"product {product!r}: {metric} {value:.6g} is below the "
                           f"threshold {threshold:.6g}")
            continue
        entry["passed"] = True

    if deployed is not None:
        for product in sorted(set(deployed.cards) - set(candidate.cards)):
            reasons.append(f"product {product!r} is served by the deployed bundle "
                           f"{deployed.model_version} but missing from the candidate")

    result = GateResult(passed=not reasons, reasons=reasons, products=products)
    logger.info("gate for %s (%s) against %s: %s%s", candidate.model_version, candidate.uri,
                deployed.model_version if deployed else "no deployed model",
                "passed" if result.passed else "failed",
                "" if result.passed else ": " + " | ".join(reasons))
    return result


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
