"""Logging for the ``gfm`` package, configured once at each entry point."""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(filename)s:%(lineno)d %(funcName)s] %(message)s"


def configure_logging(level: str | int | None = None) -> None:
    """Send the ``gfm`` logger's records to stderr.

    Args:
        level: a level name or number; defaults to ``GFM_LOG_LEVEL`` or INFO.
    """
    level = level or os.environ.get("GFM_LOG_LEVEL", "INFO")
    logger = logging.getLogger("gfm")
    logger.setLevel(level)
    if not any(getattr(h, "_gfm", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._gfm = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    # Records stop here so a host application's root handler does not
    # print them a second time.
    logger.propagate = False


def progress_enabled() -> bool:
    """Return whether to draw progress bars: on a terminal, off in CI logs."""
    if os.environ.get("CI") or os.environ.get("GFM_NO_PROGRESS"):
        return False
    return sys.stderr.isatty()
