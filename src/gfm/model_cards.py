"""The contract between a serving bundle's ``bundle.json`` and its model cards.

``gfm.twotower.bundle.export_bundle`` writes ``products/<product>/model_card.json``
with the product's own name and the bundle's ``model_version``. The bundle
loader and the deploy gate both rely on that, and this module has no heavy
imports so the gate can check cards without loading torch.
"""

from __future__ import annotations

from typing import Any


def model_card_problem(card: Any, product: str, model_version: str) -> str | None:
    """Describe how a product's model card breaks the contract, or return ``None``.

    The text completes a sentence that starts with the card's path, for
    example ``"describes product 'book', but its folder is products/movie"``.
    """
    if not isinstance(card, dict):
        return f"must contain a JSON object, got {type(card).__name__}"
    if card.get("product") != product:
        return (f"describes product {card.get('product')!r}, but its folder is "
                f"products/{product}")
    if card.get("model_version") != model_version:
        return (f"has model_version {card.get('model_version')!r}, but bundle.json has "
                f"{model_version!r}")
    return None
