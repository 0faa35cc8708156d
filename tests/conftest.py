"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder with the publishers' raw dataset files (``GFM_DATA_DIR``)."""
    value = os.environ.get("GFM_DATA_DIR")
    if not value:
        pytest.fail(
            "GFM_DATA_DIR is not set: point it at the folder holding ml-1m/ "
            "and lastfm-2k/ (.ci/run sets it)"
        )
    path = Path(value)
    for name in ("ml-1m", "lastfm-2k"):
        if not (path / name).is_dir():
            pytest.fail(f"GFM_DATA_DIR={path} has no {name}/ folder")
    return path
