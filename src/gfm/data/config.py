"""Building the data stage's settings dataclasses from plain mappings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def settings_from_dict(cls: type[T], mapping: Mapping[str, Any] | None, label: str) -> T:
    """Build the dataclass ``cls`` from ``mapping``; missing keys keep defaults.

    Args:
        cls: A dataclass whose ``__post_init__`` checks the values.
        mapping: Settings by field name; None means all defaults.
        label: What the settings are, for the error (``split settings``).

    Raises:
        ValueError: naming any unknown key, or from the value checks.
    """
    mapping = dict(mapping or {})
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise ValueError(f"unknown {label} {unknown}; known: {known}")
    return cls(**mapping)
