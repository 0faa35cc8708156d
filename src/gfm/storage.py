"""One I/O layer for local paths and ``gs://`` URIs.

Every stage reads and writes tables, arrays, JSON and model files through
these functions, so a run works the same on a laptop folder and on a GCS
bucket. Writes are atomic. A local file is written to a temporary name in
the same folder and renamed into place. A GCS object is uploaded in one
request, and GCS makes an object visible only once its upload completes.
So a failed write leaves no partial file or object behind.

GCS calls are retried on transient errors (408, 429, 5xx, connection
resets) with exponential backoff. Retries of metadata calls (list, exists,
delete) are logged with the URI involved. Uploads and downloads are retried
inside google-resumable-media, which applies the same delays plus up to 1 s
of random jitter and logs nothing.

Set ``STORAGE_EMULATOR_HOST`` (for example ``http://127.0.0.1:4443``) to use
a GCS emulator; the client then uses anonymous credentials.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

GCS_SCHEME = "gs://"

# Retry policy of every GCS call: the first wait, in seconds, doubles after
# each failure up to the maximum wait, until the total budget is spent.
GCS_RETRY_DEADLINE_S = 120.0
GCS_RETRY_INITIAL_DELAY_S = 1.0
GCS_RETRY_MAX_DELAY_S = 30.0

_client = None

# Local files get the permissions a plain open() would give them, because
# mkstemp creates its temporary file readable by the owner only. Reading the
# umask means setting it, so it is read once at import.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def is_gcs(uri: str | os.PathLike) -> bool:
    """Return whether ``uri`` names a GCS object or prefix."""
    return str(uri).startswith(GCS_SCHEME)


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path segments onto a local path or a ``gs://`` URI."""
    base = str(base)
    if is_gcs(base):
        pieces = [base.rstrip("/")] + [p.strip("/") for p in parts if p]
        return "/".join(pieces)
    return str(Path(base, *parts))


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """Split ``gs://bucket/key`` into ``(bucket, key)``."""
    if not is_gcs(uri):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    rest = uri[len(GCS_SCHEME):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"gs:// URI without a bucket: {uri!r}; use gs://BUCKET/PATH")
    return bucket, key


def gcs_client():
    """Return a process-wide ``google.cloud.storage.Client``.

    With ``STORAGE_EMULATOR_HOST`` set, the client talks to that emulator
    with anonymous credentials and project ``GOOGLE_CLOUD_PROJECT`` (default
    ``gfm-local``).
    """
    global _client
    if _client is None:
        from google.cloud import storage

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            _client = storage.Client(
                project=os.environ.get("GOOGLE_CLOUD_PROJECT", "gfm-local"),
                credentials=AnonymousCredentials(),
            )
        else:
            _client = storage.Client()
    return _client


def reset_gcs_client() -> None:
    """Forget the cached client, for example after changing the emulator."""
    global _client
    _client = None


def gcs_retry(uri: str, operation: str):
    """Build the retry policy for one GCS call, logging each retry.

    The predicate is the one of ``google.cloud.storage.retry.DEFAULT_RETRY``
    (408, 429, 5xx, connection errors), and the delays and the budget are
    the ``GCS_RETRY_*`` values of this module. google-cloud-storage 2.19
    copies only the delays and the budget into uploads and downloads, so
    ``on_error`` (the retry log) runs for metadata calls only.

    Args:
        uri: The object or prefix the call is about, for the log.
        operation: A short name of the call (``upload``, ``download``, ...).

    Returns:
        A ``google.api_core.retry.Retry``.
    """
    from google.api_core.retry import Retry
    from google.cloud.storage.retry import DEFAULT_RETRY

    def log_retry(error: Exception) -> None:
        logger.warning("retrying GCS %s of %s after %s: %s", operation, uri,
                       type(error).__name__, error)

    return Retry(
        # NOTE: _predicate is private, but google-cloud-storage 2.19 exposes its
        # retryable-error test only through DEFAULT_RETRY.
        predicate=DEFAULT_RETRY._predicate,
        initial=GCS_RETRY_INITIAL_DELAY_S,
        maximum=GCS_RETRY_MAX_DELAY_S,
        multiplier=2.0,
        timeout=GCS_RETRY_DEADLINE_S,
        on_error=log_retry,
    )


def _blob(uri: str):
    bucket, key = split_gcs_uri(uri)
    if not key:
        raise ValueError(f"gs:// URI names a bucket, not an object: {uri!r}")
    return gcs_client().bucket(bucket).blob(key)


def read_bytes(uri: str | os.PathLike) -> bytes:
    """Read a whole file or object.

    Raises:
        FileNotFoundError: if it does not exist.
    """
    uri = str(uri)
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound

        try:
            return _blob(uri).download_as_bytes(retry=gcs_retry(uri, "download"))
        except NotFound as error:
            raise FileNotFoundError(
                f"GCS object not found: {uri} (or its bucket does not exist)"
            ) from error
    return Path(uri).read_bytes()


def write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` atomically, creating parent folders as needed.

    Raises:
        FileNotFoundError: if the ``gs://`` bucket does not exist.
    """
    uri = str(uri)
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound

        # if_generation_match is not set, so retrying an upload that may have
        # landed is safe because it replaces the object with the same bytes.
        try:
            _blob(uri).upload_from_string(data, retry=gcs_retry(uri, "upload"))
        except NotFound as error:
            bucket = split_gcs_uri(uri)[0]
            raise FileNotFoundError(
                f"cannot write {uri}: bucket {bucket!r} not found; create it "
                f"first or fix the URI"
            ) from error
        logger.debug("wrote %d bytes to %s", len(data), uri)
        return

    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), _FILE_MODE)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.debug("wrote %d bytes to %s", len(data), uri)


@contextlib.contextmanager
def staged_write(uri: str | os.PathLike) -> Iterator[Path]:
    """Yield a local temporary path, published at ``uri`` when the block succeeds.

    Use it for files too large to build in memory, such as Parquet written
    row group by row group. A local target gets the file by rename and a ``gs://``
    target by one upload, so readers never see a partial file. When the
    block raises, the temporary file is removed and ``uri`` is untouched.

    Raises:
        FileNotFoundError: if the ``gs://`` bucket does not exist.
    """
    uri = str(uri)
    if is_gcs(uri):
        handle, tmp = tempfile.mkstemp(prefix="gfm-staged-")
    else:
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        yield Path(tmp)
        if is_gcs(uri):
            _upload_file(Path(tmp), uri)
        else:
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, uri)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _upload_file(path: Path, uri: str) -> None:
    from google.api_core.exceptions import NotFound

    size = path.stat().st_size
    try:
        _blob(uri).upload_from_filename(str(path), retry=gcs_retry(uri, "upload"))
    except NotFound as error:
        raise FileNotFoundError(
            f"cannot write {uri}: bucket {split_gcs_uri(uri)[0]!r} not found; "
            f"create it first or fix the URI") from error
    logger.debug("uploaded %d bytes to %s", size, uri)


def exists(uri: str | os.PathLike) -> bool:
    """Return whether a file, folder, object or non-empty prefix exists."""
    uri = str(uri)
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound

        bucket, key = split_gcs_uri(uri)
        if key and _blob(uri).exists(retry=gcs_retry(uri, "exists")):
            return True
        prefix = key.rstrip("/") + "/" if key else ""
        blobs = gcs_client().list_blobs(bucket, prefix=prefix, max_results=1,
                                        retry=gcs_retry(uri, "list"))
        try:
            return any(True for _ in blobs)
        except NotFound:
            return False  # The bucket itself does not exist.
    return Path(uri).exists()


def list_files(uri: str | os.PathLike) -> list[str]:
    """List every file below a folder or prefix, as full paths or URIs.

    A missing folder or prefix has no files, so the list is empty.

    Raises:
        FileNotFoundError: if the ``gs://`` bucket does not exist.
    """
    uri = str(uri)
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound

        bucket, key = split_gcs_uri(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        blobs = gcs_client().list_blobs(bucket, prefix=prefix,
                                        retry=gcs_retry(uri, "list"))
        try:
            names = [blob.name for blob in blobs]
        except NotFound as error:
            raise FileNotFoundError(
                f"cannot list {uri}: bucket {bucket!r} not found"
            ) from error
        # Folder placeholders (zero-byte names ending in "/") are no files.
        return sorted(f"{GCS_SCHEME}{bucket}/{name}" for name in names
                      if not name.endswith("/"))
    root = Path(uri)
    if not root.exists():
        return []
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def delete(uri: str | os.PathLike) -> None:
    """Delete a file, or every file below a folder or prefix.

    Deleting what does not exist is no error.
    """
    uri = str(uri)
    if is_gcs(uri):
        if not exists(uri):
            return
        targets = list_files(uri)
        if split_gcs_uri(uri)[1]:
            targets.append(uri)
        for target in targets:
            _delete_object(target)
        return
    path = Path(uri)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _delete_object(uri: str) -> None:
    from google.api_core.exceptions import NotFound

    try:
        _blob(uri).delete(retry=gcs_retry(uri, "delete"))
    except NotFound:
        # Either no object has this exact name (uri is a prefix), or a
        # retried delete found it already removed by the first attempt.
        pass


def copy_tree(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copy every file below ``src`` to the same relative path below ``dst``.

    Either side may be local or ``gs://``. Returns the written paths.
    """
    src, dst = str(src).rstrip("/"), str(dst).rstrip("/")
    started = time.monotonic()
    written = []
    total_bytes = 0
    for file_uri in list_files(src):
        relative = file_uri[len(src):].lstrip("/")
        target = join(dst, relative)
        data = read_bytes(file_uri)
        write_bytes(target, data)
        written.append(target)
        total_bytes += len(data)
    if not written:
        raise FileNotFoundError(f"nothing to copy: {src} is empty or missing")
    logger.info("copied %d files (%d bytes) from %s to %s in %.2f s",
                len(written), total_bytes, src, dst, time.monotonic() - started)
    return written


def local_copy(uri: str | os.PathLike, workdir: str | os.PathLike) -> Path:
    """Return a local path for ``uri``, downloading a GCS file or prefix into
    ``workdir`` first. Local paths are returned unchanged."""
    uri = str(uri)
    if not is_gcs(uri):
        return Path(uri)
    target = Path(workdir) / split_gcs_uri(uri)[1]
    files = list_files(uri)
    if files:
        copy_tree(uri, target)
    else:
        write_bytes(target, read_bytes(uri))
    return target


# Typed helpers ------------------------------------------------------------


def read_json(uri: str | os.PathLike) -> Any:
    """Read a JSON document."""
    return json.loads(read_bytes(uri).decode("utf-8"))


def write_json(uri: str | os.PathLike, value: Any, *, allow_nan: bool = True) -> None:
    """Write ``value`` as indented UTF-8 JSON, atomically.

    Args:
        uri: the file, local or ``gs://``.
        value: JSON-ready data; numpy scalars and arrays and paths are
            converted.
        allow_nan: write NaN and infinities as the bare words ``NaN`` and
            ``Infinity``, which Python reads back but strict JSON parsers
            reject. With False they raise ValueError instead.
    """
    text = json.dumps(value, indent=2, sort_keys=True, default=_json_default,
                      allow_nan=allow_nan)
    write_bytes(uri, (text + "\n").encode("utf-8"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")


def read_text(uri: str | os.PathLike) -> str:
    """Read a UTF-8 text file."""
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str | os.PathLike, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    write_bytes(uri, text.encode("utf-8"))


def read_table(uri: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file into an Arrow table."""
    uri = str(uri)
    if not is_gcs(uri):
        if not Path(uri).exists():
            raise FileNotFoundError(f"no such Parquet file: {uri}")
        return pq.read_table(uri, columns=columns)
    return pq.read_table(io.BytesIO(read_bytes(uri)), columns=columns)


def write_table(table: pa.Table, uri: str | os.PathLike) -> None:
    """Write an Arrow table as one Parquet file (zstd), atomically."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    write_bytes(uri, sink.getvalue())


def read_array(uri: str | os.PathLike) -> np.ndarray:
    """Read a ``.npy`` array."""
    return np.load(io.BytesIO(read_bytes(uri)), allow_pickle=False)


def write_array(uri: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy``, atomically."""
    sink = io.BytesIO()
    np.save(sink, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes(uri, sink.getvalue())


def read_torch(uri: str | os.PathLike, weights_only: bool = True) -> Any:
    """Load an object saved with :func:`write_torch` onto the CPU."""
    import torch

    return torch.load(io.BytesIO(read_bytes(uri)), map_location="cpu",
                      weights_only=weights_only)


def write_torch(uri: str | os.PathLike, obj: Any) -> None:
    """Save ``obj`` with ``torch.save``, atomically."""
    import torch

    sink = io.BytesIO()
    torch.save(obj, sink)
    write_bytes(uri, sink.getvalue())


def iter_lines(uri: str | os.PathLike, encoding: str = "utf-8") -> Iterator[str]:
    """Yield the lines of a text file without their line endings."""
    yield from read_bytes(uri).decode(encoding).splitlines()
