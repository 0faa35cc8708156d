"""Tests of gfm.storage against local folders and the GCS emulator."""

from __future__ import annotations

import http.client
import http.server
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from gfm import storage


@pytest.fixture(params=["local", "gcs"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh empty folder: a tmp_path folder or a prefix in the emulator."""
    if request.param == "local":
        return str(tmp_path / "root")
    emulator = request.getfixturevalue("gcs_emulator")
    bucket = emulator.create_bucket("storage-tests")
    return f"{bucket}/{uuid.uuid4().hex}"


# Paths and URIs -------------------------------------------------------------


def test_join_gcs_strips_slashes():
    assert storage.join("gs://b/", "/a/", "c.txt") == "gs://b/a/c.txt"
    assert storage.join("gs://b", "") == "gs://b"


def test_join_local_uses_path_rules(tmp_path: Path):
    assert storage.join(tmp_path, "a", "b.txt") == str(tmp_path / "a" / "b.txt")


def test_split_gcs_uri_cases():
    assert storage.split_gcs_uri("gs://bucket/a/b") == ("bucket", "a/b")
    assert storage.split_gcs_uri("gs://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="without a bucket"):
        storage.split_gcs_uri("gs:///key")
    with pytest.raises(ValueError, match="not a gs:// URI"):
        storage.split_gcs_uri("/tmp/x")


# Round trips ----------------------------------------------------------------


def test_bytes_round_trip(root: str):
    uri = storage.join(root, "nested", "deeper", "blob.bin")
    payload = bytes(range(256)) * 3

    storage.write_bytes(uri, payload)

    assert storage.read_bytes(uri) == payload
    assert storage.exists(uri)


def test_overwrite_replaces_content(root: str):
    uri = storage.join(root, "file.txt")
    storage.write_text(uri, "first")
    storage.write_text(uri, "second")
    assert storage.read_text(uri) == "second"


def test_json_round_trip_numpy_values(root: str):
    uri = storage.join(root, "doc.json")
    value = {"count": np.int64(3), "ratio": np.float32(0.5),
             "vector": np.arange(3), "path": Path("/x"), "text": "é"}

    storage.write_json(uri, value)

    assert storage.read_json(uri) == {"count": 3, "ratio": 0.5,
                                      "vector": [0, 1, 2], "path": "/x", "text": "é"}


def test_json_rejects_unknown_type(root: str):
    uri = storage.join(root, "bad.json")
    with pytest.raises(TypeError, match="cannot write object as JSON"):
        storage.write_json(uri, {"value": object()})
    assert not storage.exists(uri)


def test_parquet_round_trip(root: str):
    uri = storage.join(root, "table.parquet")
    table = pa.table({
        "item_id": pa.array(["a", "b", None]),
        "score": pa.array([1.5, 2.5, 3.5], pa.float32()),
        "tags": pa.array([["x"], [], None], pa.list_(pa.string())),
    })

    storage.write_table(table, uri)
    read = storage.read_table(uri)

    assert read.equals(table)
    assert storage.read_table(uri, columns=["score"]).column_names == ["score"]


def test_npy_round_trip(root: str):
    uri = storage.join(root, "matrix.npy")
    array = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)

    storage.write_array(uri, array[:, ::2])  # a non-contiguous view
    read = storage.read_array(uri)

    assert read.dtype == np.float32
    assert read.shape == (7, 3)
    np.testing.assert_array_equal(read, array[:, ::2])


def test_torch_round_trip(root: str):
    uri = storage.join(root, "model.pt")
    state = {"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
             "step": 4}

    storage.write_torch(uri, state)
    read = storage.read_torch(uri)

    assert read["step"] == 4
    assert torch.equal(read["weight"], state["weight"])


def test_ten_mib_round_trip(root: str):
    # Above google-cloud-storage's 8 MiB threshold, so the upload is resumable.
    uri = storage.join(root, "big.bin")
    payload = np.random.default_rng(1).bytes(10 * 1024 * 1024)

    storage.write_bytes(uri, payload)

    assert storage.read_bytes(uri) == payload


def test_iter_lines_latin1(root: str):
    uri = storage.join(root, "lines.txt")
    storage.write_bytes(uri, "a\r\nb\ncaf\xe9\n".encode("latin-1"))
    assert list(storage.iter_lines(uri, encoding="latin-1")) == ["a", "b", "café"]


# Listing, existence, deletion and copies ------------------------------------


def _write_tree(root: str) -> None:
    storage.write_text(storage.join(root, "a.txt"), "a")
    storage.write_text(storage.join(root, "sub", "b.txt"), "b")
    storage.write_text(storage.join(root, "sub", "deep", "c.txt"), "c")


def test_list_files_recursive_sorted(root: str):
    _write_tree(root)

    listed = storage.list_files(root)

    assert listed == [storage.join(root, "a.txt"),
                      storage.join(root, "sub", "b.txt"),
                      storage.join(root, "sub", "deep", "c.txt")]
    assert storage.list_files(storage.join(root, "sub", "deep")) == [
        storage.join(root, "sub", "deep", "c.txt")]


def test_list_files_missing_is_empty(root: str):
    assert storage.list_files(storage.join(root, "absent")) == []


def test_exists_for_files_and_folders(root: str):
    _write_tree(root)

    assert storage.exists(root)
    assert storage.exists(storage.join(root, "sub"))
    assert storage.exists(storage.join(root, "sub", "b.txt"))
    assert not storage.exists(storage.join(root, "su"))
    assert not storage.exists(storage.join(root, "absent.txt"))


def test_delete_file_and_folder(root: str):
    _write_tree(root)

    storage.delete(storage.join(root, "a.txt"))
    assert not storage.exists(storage.join(root, "a.txt"))
    assert storage.exists(storage.join(root, "sub", "b.txt"))

    storage.delete(storage.join(root, "sub"))
    assert not storage.exists(storage.join(root, "sub"))
    assert storage.list_files(root) == []


def test_delete_missing_is_no_error(root: str):
    storage.delete(storage.join(root, "never-written"))
    assert not storage.exists(storage.join(root, "never-written"))


def test_copy_tree_local_gcs_local(tmp_path: Path, gcs_emulator):
    source = tmp_path / "source"
    _write_tree(str(source))
    bucket = gcs_emulator.create_bucket("storage-tests")
    remote = f"{bucket}/{uuid.uuid4().hex}/tree"

    uploaded = storage.copy_tree(source, remote)
    downloaded = storage.copy_tree(remote, tmp_path / "back")

    assert sorted(uploaded) == [f"{remote}/a.txt", f"{remote}/sub/b.txt",
                                f"{remote}/sub/deep/c.txt"]
    assert len(downloaded) == 3
    assert (tmp_path / "back" / "sub" / "deep" / "c.txt").read_text() == "c"
    assert (tmp_path / "back" / "a.txt").read_text() == "a"


def test_copy_tree_empty_source_raises(root: str, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nothing to copy"):
        storage.copy_tree(storage.join(root, "empty"), tmp_path / "out")


def test_local_copy_downloads_prefix_and_file(tmp_path: Path, gcs_emulator):
    bucket = gcs_emulator.create_bucket("storage-tests")
    remote = f"{bucket}/{uuid.uuid4().hex}"
    _write_tree(remote)

    folder = storage.local_copy(f"{remote}/sub", tmp_path / "work")
    single = storage.local_copy(f"{remote}/a.txt", tmp_path / "work")

    assert (folder / "deep" / "c.txt").read_text() == "c"
    assert single.read_text() == "a"
    assert storage.local_copy(tmp_path, tmp_path / "work") == tmp_path


# Atomicity and permissions --------------------------------------------------


def test_failed_local_write_leaves_no_file(tmp_path: Path, monkeypatch):
    target = tmp_path / "out" / "data.bin"

    def failing_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        storage.write_bytes(target, b"x" * 1000)

    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_failed_local_overwrite_keeps_old_content(tmp_path: Path, monkeypatch):
    target = tmp_path / "data.json"
    storage.write_json(target, {"version": 1})

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        storage.write_json(target, {"version": 2})

    assert storage.read_json(target) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_local_file_mode_follows_umask(tmp_path: Path):
    target = tmp_path / "mode.txt"
    storage.write_text(target, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_staged_write_publishes_on_success(root: str):
    uri = storage.join(root, "staged", "table.parquet")
    table = pa.table({"x": list(range(1000))})

    with storage.staged_write(uri) as path:
        assert not storage.exists(uri)
        pq.write_table(table, path)

    assert storage.read_table(uri).equals(table)
    assert not path.exists()


def test_staged_write_failure_leaves_nothing(root: str):
    uri = storage.join(root, "staged", "broken.bin")

    with pytest.raises(RuntimeError, match="writer failed"), \
            storage.staged_write(uri) as path:
        path.write_bytes(b"partial")
        raise RuntimeError("writer failed")

    assert not storage.exists(uri)
    assert not path.exists()
    assert storage.list_files(storage.join(root, "staged")) == []


# Clear errors ---------------------------------------------------------------


def test_read_missing_local_raises(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(tmp_path / "absent.bin")
    with pytest.raises(FileNotFoundError, match="no such Parquet file"):
        storage.read_table(tmp_path / "absent.parquet")


def test_read_missing_object_names_uri(gcs_emulator):
    bucket = gcs_emulator.create_bucket("storage-tests")
    uri = f"{bucket}/absent/{uuid.uuid4().hex}.bin"
    with pytest.raises(FileNotFoundError, match=uri):
        storage.read_bytes(uri)


def test_missing_bucket_errors(gcs_emulator):
    uri = "gs://no-such-bucket-gfm/x.bin"
    with pytest.raises(FileNotFoundError, match="bucket 'no-such-bucket-gfm' not found"):
        storage.write_bytes(uri, b"x")
    with pytest.raises(FileNotFoundError, match="no-such-bucket-gfm"):
        storage.list_files("gs://no-such-bucket-gfm/prefix")
    assert not storage.exists(uri)


def test_bucket_uri_is_not_an_object(gcs_emulator):
    bucket = gcs_emulator.create_bucket("storage-tests")
    with pytest.raises(ValueError, match="names a bucket, not an object"):
        storage.read_bytes(bucket)


# Retries --------------------------------------------------------------------


class _FlakyProxy(http.server.ThreadingHTTPServer):
    """An HTTP proxy to the emulator that returns 503 for its first requests."""

    def __init__(self, upstream_port: int, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), _FlakyHandler)
        self.upstream_port = upstream_port
        self.failures_left = failures
        self.failed = 0
        self.forwarded = 0
        self.lock = threading.Lock()


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    server: _FlakyProxy

    def log_message(self, format: str, *args: object) -> None:
        pass  # Keep the test output free of access logs.

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        with self.server.lock:
            fail = self.server.failures_left > 0
            if fail:
                self.server.failures_left -= 1
                self.server.failed += 1
            else:
                self.server.forwarded += 1
        if fail:
            message = b'{"error": {"code": 503, "message": "injected outage"}}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            self.wfile.write(message)
            return

        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port,
                                              timeout=30)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection")}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


@pytest.fixture
def flaky_gcs(gcs_emulator, monkeypatch) -> Iterator[_FlakyProxy]:
    """Route gfm.storage through a proxy that fails its first 2 requests."""
    bucket = gcs_emulator.create_bucket("storage-retry-tests")
    upstream_port = int(gcs_emulator.url.rsplit(":", 1)[1])
    proxy = _FlakyProxy(upstream_port, failures=0)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{proxy.server_port}")
    monkeypatch.setattr(storage, "GCS_RETRY_INITIAL_DELAY_S", 0.01)
    monkeypatch.setattr(storage, "GCS_RETRY_MAX_DELAY_S", 0.05)
    storage.reset_gcs_client()
    proxy.bucket = bucket
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        storage.reset_gcs_client()


def test_transient_503_upload_download_retried(flaky_gcs: _FlakyProxy):
    uri = f"{flaky_gcs.bucket}/{uuid.uuid4().hex}.bin"

    flaky_gcs.failures_left = 2
    storage.write_bytes(uri, b"payload")
    flaky_gcs.failures_left = 2
    read = storage.read_bytes(uri)

    assert read == b"payload"
    assert flaky_gcs.failed == 4
    assert flaky_gcs.forwarded == 2


def test_transient_503_list_retried_and_logged(flaky_gcs: _FlakyProxy, caplog):
    prefix = f"{flaky_gcs.bucket}/{uuid.uuid4().hex}"
    storage.write_bytes(f"{prefix}/a.bin", b"a")

    flaky_gcs.failures_left = 2
    with caplog.at_level(logging.WARNING, logger="gfm.storage"):
        listed = storage.list_files(prefix)

    assert listed == [f"{prefix}/a.bin"]
    assert flaky_gcs.failed == 2
    retries = [r.getMessage() for r in caplog.records
               if r.getMessage().startswith("retrying GCS list")]
    assert len(retries) == 2
    assert prefix in retries[0]
    assert "ServiceUnavailable" in retries[0]


def test_lasting_503_gives_up(flaky_gcs: _FlakyProxy, monkeypatch):
    from google.api_core.exceptions import RetryError, ServiceUnavailable

    monkeypatch.setattr(storage, "GCS_RETRY_DEADLINE_S", 0.3)
    flaky_gcs.failures_left = 10**6

    with pytest.raises((RetryError, ServiceUnavailable)):
        storage.write_bytes(f"{flaky_gcs.bucket}/never.bin", b"x")
    # google-resumable-media adds up to 1 s of random jitter to each wait,
    # so the number of attempts within the budget varies.
    assert flaky_gcs.failed >= 1
    assert flaky_gcs.forwarded == 0
