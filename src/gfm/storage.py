"""One I/O layer for local paths and ``gs://`` URIs.

Every stage reads and writes tables, arrays, JSON and model files through
these functions, so a run works the same on a laptop folder and on a GCS
bucket. Writes are atomic: a local file is written to a temporary name in
the same folder and renamed into place, and a GCS object is uploaded in one
request (GCS makes an object visible only once its upload completes), so a
failed write leaves no partial file or object behind. GCS calls are retried
on transient errors (429, 5xx, connection resets) with exponential backoff.

Set ``STORAGE_EMULATOR_HOST`` (for example ``http://127.0.0.1:4443``) to use
a GCS emulator; the client then uses anonymous credentials.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

GCS_SCHEME = "gs://"

# Total time budget, in seconds, for retrying one GCS call.
GCS_RETRY_DEADLINE_S = 120.0

_client = None


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


def _retry():
    # The library's policy retries 408, 429, 5xx and connection errors with
    # exponential backoff; only its overall budget is ours.
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(GCS_RETRY_DEADLINE_S)


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
            return _blob(uri).download_as_bytes(retry=_retry())
        except NotFound as error:
            raise FileNotFoundError(f"no such object: {uri}") from error
    return Path(uri).read_bytes()


def write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` atomically, creating parent folders as needed."""
    uri = str(uri)
    if is_gcs(uri):
        # if_generation_match is not set, so retrying an upload that may have
        # landed is safe: it replaces the object with the same bytes.
        _blob(uri).upload_from_string(data, retry=_retry())
        logger.debug("wrote %d bytes to %s", len(data), uri)
        return

    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.debug("wrote %d bytes to %s", len(data), uri)


def exists(uri: str | os.PathLike) -> bool:
    """Return whether a file, folder, object or non-empty prefix exists."""
    uri = str(uri)
    if is_gcs(uri):
        bucket, key = split_gcs_uri(uri)
        if key and _blob(uri).exists(retry=_retry()):
            return True
        prefix = key.rstrip("/") + "/" if key else ""
        blobs = gcs_client().list_blobs(bucket, prefix=prefix, max_results=1,
                                        retry=_retry())
        return any(True for _ in blobs)
    return Path(uri).exists()


def list_files(uri: str | os.PathLike) -> list[str]:
    """List every file below a folder or prefix, as full paths or URIs."""
    uri = str(uri)
    if is_gcs(uri):
        bucket, key = split_gcs_uri(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        return sorted(
            f"{GCS_SCHEME}{bucket}/{blob.name}"
            for blob in gcs_client().list_blobs(bucket, prefix=prefix, retry=_retry())
            if not blob.name.endswith("/")
        )
    root = Path(uri)
    if not root.exists():
        return []
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def delete(uri: str | os.PathLike) -> None:
    """Delete a file, or every file below a folder or prefix."""
    uri = str(uri)
    if is_gcs(uri):
        for file_uri in list_files(uri):
            _blob(file_uri).delete(retry=_retry())
        if split_gcs_uri(uri)[1] and _blob(uri).exists(retry=_retry()):
            _blob(uri).delete(retry=_retry())
        return
    path = Path(uri)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def copy_tree(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copy every file below ``src`` to the same relative path below ``dst``.

    Either side may be local or ``gs://``. Returns the written paths.
    """
    src, dst = str(src).rstrip("/"), str(dst).rstrip("/")
    written = []
    for file_uri in list_files(src):
        relative = file_uri[len(src):].lstrip("/")
        target = join(dst, relative)
        write_bytes(target, read_bytes(file_uri))
        written.append(target)
    if not written:
        raise FileNotFoundError(f"nothing to copy: {src} is empty or missing")
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


def write_json(uri: str | os.PathLike, value: Any) -> None:
    """Write ``value`` as indented UTF-8 JSON, atomically."""
    text = json.dumps(value, indent=2, sort_keys=True, default=_json_default)
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
