"""Errors of the graph stage; each is a ValueError, so callers may catch that."""

from __future__ import annotations


class GraphInputError(ValueError):
    """Invalid catalog, interactions or features given to the graph build."""


class UnknownItemsError(GraphInputError):
    """Interactions name items missing from the catalog (``strict`` mode)."""


class EmptyGraphError(ValueError):
    """The settings left no edge at all; the message names what to change."""
