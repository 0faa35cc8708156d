"""The promotion gate: a new bundle replaces the deployed one only if its
model cards' metrics are at least as good, product by product."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from gfm import storage
from gfm.model_cards import model_card_problem
from gfm.serving.deploy_config import DeployConfig

logger = logging.getLogger(__name__)

BUNDLE_FILE = "bundle.json"


@dataclass
class BundleCards:
    """The version, ``bundle.json`` and per-product model cards of one serving bundle."""

    uri: str
    model_version: str
    cards: dict[str, dict[str, Any]]
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass
class GateResult:
    """The gate's decision.

    Args:
        passed: whether the candidate may be deployed.
        reasons: one line per failed check; empty when ``passed``.
        products: per product, the candidate's and deployed metric values,
            the threshold and whether that product passed.
        notes: checks that passed only in a weaker form, for example a
            product compared with ``gate_min_value`` alone because the
            deployed model has no value to compare with.
    """

    passed: bool
    reasons: list[str] = field(default_factory=list)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_bundle_cards(uri: str) -> BundleCards:
    """Read ``bundle.json`` and every product's ``model_card.json`` below ``uri``.

    Only these small files are read, not the item vectors, so the gate can
    run on a large bundle in GCS. Each card must name its own product folder
    and the bundle's ``model_version``, as ``export_bundle`` writes them.

    Raises:
        FileNotFoundError: if ``bundle.json`` or a model card is missing.
        ValueError: if ``bundle.json`` is not an object listing products and
            a ``model_version``, or a card disagrees with its folder or with
            ``bundle.json``.
    """
    manifest_uri = storage.join(uri, BUNDLE_FILE)
    manifest = storage.read_json(manifest_uri)
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_uri} must contain a JSON object, got "
                         f"{type(manifest).__name__}; export the bundle again")
    products = manifest.get("products") or []
    if isinstance(products, dict):
        products = list(products)
    if not products:
        raise ValueError(f"{manifest_uri} lists no products")
    version = manifest.get("model_version")
    if not isinstance(version, str) or not version:
        raise ValueError(f"{manifest_uri} has model_version {version!r}; expected a "
                         "non-empty string")
    cards = {}
    for product in products:
        card_uri = storage.join(uri, "products", product, "model_card.json")
        card = storage.read_json(card_uri)
        problem = model_card_problem(card, product, version)
        if problem:
            raise ValueError(f"{card_uri} {problem}; export the bundle again")
        cards[product] = card
    return BundleCards(uri=str(uri), model_version=version, cards=cards, manifest=manifest)


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
    ``deployed_value * (1 - gate_tolerance)``. Its two cards must contain
    equal values at each ``gate_require_equal`` path (the same product,
    item types, K and data snapshot by default), because a metric measured
    on other data or at another K cannot be compared. When the deployed
    card has no numeric ``gate_metric``, the product fails unless
    ``allow_missing_baseline`` is set. A product of the deployed bundle
    that the candidate lacks fails the gate, because deploying would stop
    serving it.

    Args:
        candidate: cards of the bundle to deploy.
        deployed: cards of the bundle in service, or ``None`` if none is.
        config: gate settings.

    Returns:
        The decision with one reason per failed check, and one note per
        product compared with ``gate_min_value`` alone.
    """
    reasons: list[str] = []
    notes: list[str] = []
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
        if deployed is not None and deployed_card is None:
            notes.append(f"product {product!r} is new (the deployed bundle "
                         f"{deployed.model_version} does not serve it), so it is "
                         f"compared with gate_min_value only")
        if deployed_card is not None:
            mismatched = _incomparable_paths(card, deployed_card, config.gate_require_equal)
            if mismatched:
                reasons.append(f"product {product!r}: metrics are not comparable: "
                               + "; ".join(mismatched))
                continue
            deployed_value = lookup(deployed_card, metric)
            entry["deployed"] = deployed_value
            if _is_number(deployed_value):
                threshold = max(threshold, deployed_value * (1.0 - config.gate_tolerance))
            elif config.allow_missing_baseline:
                notes.append(f"product {product!r}: the deployed model card has no numeric "
                             f"{metric} (got {deployed_value!r}); compared with "
                             f"gate_min_value only because allow_missing_baseline is set")
            else:
                reasons.append(f"product {product!r}: the deployed model card has no "
                               f"numeric {metric} (got {deployed_value!r}), so the candidate "
                               f"cannot be compared; set allow_missing_baseline to compare "
                               f"with gate_min_value only")
                continue

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

    result = GateResult(passed=not reasons, reasons=reasons, products=products, notes=notes)
    logger.info("gate for %s (%s) against %s: %s%s", candidate.model_version, candidate.uri,
                deployed.model_version if deployed else "no deployed model",
                "passed" if result.passed else "failed",
                "" if result.passed else ": " + " | ".join(reasons))
    for note in notes:
        logger.warning("gate for %s: %s", candidate.model_version, note)
    return result


def _incomparable_paths(card: Mapping[str, Any], deployed_card: Mapping[str, Any],
                        paths: tuple[str, ...]) -> list[str]:
    # A path missing from both cards is incomparable too, because two absent
    # values do not show that the metrics were measured the same way.
    problems = []
    for path in paths:
        mine, theirs = lookup(card, path), lookup(deployed_card, path)
        if mine is None or theirs is None:
            side = " and ".join(name for name, v in (("candidate", mine), ("deployed", theirs))
                                if v is None)
            problems.append(f"{path} is missing from the {side} model card")
        elif mine != theirs:
            problems.append(f"{path} {mine!r} vs deployed {theirs!r}")
    return problems


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
