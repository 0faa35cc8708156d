"""Finding the publishers' raw files, downloading and verifying them if absent.

A loader calls :func:`ensure_files` to get a folder with its files. The
folder ``<data_dir>/<name>`` is used as is when it contains every expected
file. Otherwise the official zip archive is downloaded (its URL can be
replaced through an environment variable, for mirrors and tests), verified
(expected members, line counts and known git blob ids) and extracted to
``<cache_dir>/datasets/<name>``, which later calls reuse.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import requests

from gfm import settings, storage

logger = logging.getLogger(__name__)

# Download attempts per archive, and the first wait between them in seconds
# (doubled after each failure).
DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_RETRY_DELAY_S = 2.0
# Connect and read timeouts of one download request, in seconds.
DOWNLOAD_TIMEOUT_S = (10.0, 60.0)

VERIFIED_MARKER = ".verified.json"


class DatasetUnavailableError(FileNotFoundError):
    """The raw files are neither on disk nor downloadable."""


class ArchiveVerificationError(ValueError):
    """A downloaded archive lacks a member or has unexpected contents."""


@dataclass(frozen=True)
class ArchiveSpec:
    """Source and expected contents of a dataset's raw files.

    Attributes:
        name: Folder name below the data folder, for example ``ml-1m``.
        url: Official download URL of the zip archive.
        url_env: Environment variable that replaces ``url`` when set.
        line_counts: Member file name -> expected number of lines, header
            included. These are the files the loader reads.
        git_blob_ids: Member file name -> SHA-1 git blob id, for files whose
            exact bytes are known.
    """

    name: str
    url: str
    url_env: str
    line_counts: dict[str, int]
    git_blob_ids: dict[str, str] = field(default_factory=dict)

    def resolved_url(self) -> str:
        """Return the download URL in effect (the environment variable wins)."""
        return os.environ.get(self.url_env) or self.url


def ensure_files(spec: ArchiveSpec, data_dir: str | os.PathLike | None = None) -> Path:
    """Return a local folder holding every file of ``spec.line_counts``.

    Args:
        spec: The dataset's archive description.
        data_dir: Folder holding raw dataset folders; defaults to
            ``gfm.settings.data_dir()`` (``GFM_DATA_DIR``).

    Returns:
        ``<data_dir>/<spec.name>`` when complete, otherwise the verified
        copy under ``<cache_dir>/datasets/<spec.name>``.

    Raises:
        DatasetUnavailableError: if the files are absent and the download
            fails.
        ArchiveVerificationError: if the downloaded archive is not the
            expected one.
    """
    folder = Path(data_dir if data_dir is not None else settings.data_dir()) / spec.name
    if _has_files(folder, spec):
        return folder

    cached = settings.cache_dir() / "datasets" / spec.name
    if _has_files(cached, spec) and (cached / VERIFIED_MARKER).exists():
        logger.info("using cached %s files in %s", spec.name, cached)
        return cached

    url = spec.resolved_url()
    logger.info("%s files not found in %s; downloading %s", spec.name, folder, url)
    archive = _download(url, spec, folder)
    _extract_verified(archive, spec, cached, url)
    return cached


def git_blob_id(data: bytes) -> str:
    """Return the SHA-1 id git gives a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def count_lines(data: bytes) -> int:
    """Count lines, including a last line without a line ending."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _has_files(folder: Path, spec: ArchiveSpec) -> bool:
    return all((folder / name).is_file() for name in spec.line_counts)


def _download(url: str, spec: ArchiveSpec, folder: Path) -> bytes:
    delay = DOWNLOAD_RETRY_DELAY_S
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        started = time.monotonic()
        try:
            response = requests.get(url, timeout=DOWNLOAD_TIMEOUT_S)
            response.raise_for_status()
        except requests.RequestException as error:
            retryable = not isinstance(error, requests.HTTPError) or (
                error.response is not None and error.response.status_code >= 500)
            if retryable and attempt < DOWNLOAD_ATTEMPTS:
                logger.warning("download of %s failed (attempt %d of %d): %s; "
                               "retrying in %.0f s", url, attempt, DOWNLOAD_ATTEMPTS,
                               error, delay)
                time.sleep(delay)
                delay *= 2
                continue
            raise DatasetUnavailableError(
                f"{spec.name} files not found in {folder} and the download from "
                f"{url} failed: {error}. Put the publisher's files in "
                f"{folder}, set GFM_DATA_DIR to a folder that contains "
                f"{spec.name}/, or set {spec.url_env} to a reachable mirror"
            ) from error
        logger.info("downloaded %s (%d bytes) in %.1f s", url, len(response.content),
                    time.monotonic() - started)
        return response.content
    raise AssertionError("unreachable: the loop returns or raises")


def _extract_verified(archive: bytes, spec: ArchiveSpec, target: Path, url: str) -> None:
    try:
        bundle = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile as error:
        raise ArchiveVerificationError(
            f"{url} is not a zip archive ({len(archive)} bytes); check {spec.url_env} "
            f"or the mirror") from error

    # Archives nest their files in a folder (ml-1m/ratings.dat) or not.
    members = {}
    for info in bundle.infolist():
        base = info.filename.rsplit("/", 1)[-1]
        if not info.is_dir() and not info.filename.startswith("__MACOSX/"):
            members.setdefault(base, info.filename)
    missing = [name for name in spec.line_counts if name not in members]
    if missing:
        raise ArchiveVerificationError(
            f"{url} lacks {missing} (it has {sorted(members)}); it is not the "
            f"{spec.name} archive")

    contents = {name: bundle.read(members[name]) for name in spec.line_counts}
    for name, expected in spec.line_counts.items():
        lines = count_lines(contents[name])
        if lines != expected:
            raise ArchiveVerificationError(
                f"{name} in {url} has {lines} lines, expected {expected}; the "
                f"archive is truncated or a different release")
    for name, expected in spec.git_blob_ids.items():
        actual = git_blob_id(contents[name])
        if actual != expected:
            raise ArchiveVerificationError(
                f"{name} in {url} has git blob id {actual}, expected {expected}; "
                f"the file differs from the official release")

    # Extract beside the target and rename, so a failure leaves no half folder.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=target.parent))
    try:
        for name, data in contents.items():
            (staging / name).write_bytes(data)
        storage.write_json(staging / VERIFIED_MARKER, {
            "url": url,
            "line_counts": spec.line_counts,
            "git_blob_ids": {name: git_blob_id(data) for name, data in contents.items()},
        })
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("verified and extracted %d %s files to %s", len(contents), spec.name,
                target)
