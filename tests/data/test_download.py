"""Tests of the download path against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from gfm.data import download, load_dataset
from gfm.data.download import (
    ArchiveVerificationError,
    DatasetUnavailableError,
    count_lines,
    git_blob_id,
)
from gfm.data.lastfm import SPEC as LASTFM_SPEC


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def archive_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """Serve tmp_path/www on 127.0.0.1; yield (base URL, folder, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (_CountingHandler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", root, handler.requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("GFM_CACHE_DIR", str(cache))
    monkeypatch.setattr(download, "DOWNLOAD_RETRY_DELAY_S", 0.0)
    return cache


def build_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)


def real_files(data_dir: Path, folder: str, names) -> dict[str, bytes]:
    return {name: (data_dir / folder / name).read_bytes() for name in names}


def test_movielens_downloaded_verified_cached(data_dir, archive_server, isolated_cache,
                                              tmp_path, monkeypatch):
    base, root, requests = archive_server
    names = ["ratings.dat", "movies.dat", "users.dat", "README"]
    build_zip(root / "ml-1m.zip", {f"ml-1m/{name}": data for name, data in
                                   real_files(data_dir, "ml-1m", names).items()})
    monkeypatch.setenv("GFM_MOVIELENS_1M_URL", f"{base}/ml-1m.zip")
    empty = tmp_path / "no-data"

    dataset = load_dataset("movielens-1m", empty)
    again = load_dataset("movielens-1m", empty)

    cached = isolated_cache / "datasets" / "ml-1m"
    assert len(dataset.interactions) == 1_000_209
    assert len(again.interactions) == 1_000_209
    assert requests == ["/ml-1m.zip"]
    assert (cached / ".verified.json").is_file()
    assert (cached / "ratings.dat").stat().st_size == 24_594_131
    assert dataset.report["source"]["url"] == f"{base}/ml-1m.zip"


def test_flat_archive_layout_accepted(data_dir, archive_server, isolated_cache,
                                      tmp_path, monkeypatch):
    base, root, _ = archive_server
    names = list(LASTFM_SPEC.line_counts) + ["user_friends.dat"]
    build_zip(root / "lastfm.zip", real_files(data_dir, "lastfm-2k", names))
    monkeypatch.setenv("GFM_LASTFM_2K_URL", f"{base}/lastfm.zip")

    dataset = load_dataset("lastfm-2k", tmp_path / "no-data")

    assert (dataset.interactions["event_type"] == "listen").sum() == 92_834
    cached = sorted(p.name for p in (isolated_cache / "datasets" / "lastfm-2k").iterdir())
    assert cached == [".verified.json", "artists.dat", "tags.dat", "user_artists.dat",
                      "user_taggedartists.dat"]


def test_local_files_win_over_download(data_dir, isolated_cache, monkeypatch):
    monkeypatch.setenv("GFM_LASTFM_2K_URL", f"http://127.0.0.1:{closed_port()}/x.zip")
    folder = download.ensure_files(LASTFM_SPEC, data_dir)
    assert folder == data_dir / "lastfm-2k"
    assert not isolated_cache.exists()


def test_truncated_archive_rejected(data_dir, archive_server, isolated_cache,
                                    tmp_path, monkeypatch):
    base, root, _ = archive_server
    files = real_files(data_dir, "lastfm-2k", LASTFM_SPEC.line_counts)
    files["user_artists.dat"] = b"\n".join(files["user_artists.dat"].split(b"\n")[:100])
    build_zip(root / "lastfm.zip", files)
    monkeypatch.setenv("GFM_LASTFM_2K_URL", f"{base}/lastfm.zip")

    with pytest.raises(ArchiveVerificationError,
                       match=r"user_artists.dat .* has 100 lines, expected 92835"):
        load_dataset("lastfm-2k", tmp_path / "no-data")
    assert not (isolated_cache / "datasets" / "lastfm-2k").exists()


def test_missing_member_rejected(archive_server, isolated_cache, tmp_path, monkeypatch):
    base, root, _ = archive_server
    build_zip(root / "lastfm.zip", {"artists.dat": b"id\tname\n"})
    monkeypatch.setenv("GFM_LASTFM_2K_URL", f"{base}/lastfm.zip")

    with pytest.raises(ArchiveVerificationError, match=r"lacks \['tags.dat'"):
        load_dataset("lastfm-2k", tmp_path / "no-data")


def test_changed_bytes_rejected_by_blob_id(data_dir, archive_server, isolated_cache,
                                           tmp_path, monkeypatch):
    base, root, _ = archive_server
    files = real_files(data_dir, "ml-1m", ["ratings.dat", "movies.dat", "users.dat"])
    files["ratings.dat"] = files["ratings.dat"].replace(b"1::1193::5", b"1::1193::4", 1)
    build_zip(root / "ml-1m.zip", files)
    monkeypatch.setenv("GFM_MOVIELENS_1M_URL", f"{base}/ml-1m.zip")

    with pytest.raises(ArchiveVerificationError, match="ratings.dat .* git blob id"):
        load_dataset("movielens-1m", tmp_path / "no-data")


def test_not_a_zip_rejected(archive_server, isolated_cache, tmp_path, monkeypatch):
    base, root, _ = archive_server
    (root / "page.zip").write_text("<html>captive portal</html>")
    monkeypatch.setenv("GFM_LASTFM_2K_URL", f"{base}/page.zip")

    with pytest.raises(ArchiveVerificationError, match="is not a zip archive"):
        load_dataset("lastfm-2k", tmp_path / "no-data")


def test_http_404_not_retried(archive_server, isolated_cache, tmp_path, monkeypatch):
    base, _, requests = archive_server
    monkeypatch.setenv("GFM_LASTFM_2K_URL", f"{base}/missing.zip")

    with pytest.raises(DatasetUnavailableError, match="404"):
        load_dataset("lastfm-2k", tmp_path / "no-data")
    assert requests == ["/missing.zip"]


def closed_port() -> int:
    """Return a loopback port that was free a moment ago, so nothing listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_offline_error_names_settings(isolated_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("GFM_LASTFM_2K_URL", f"http://127.0.0.1:{closed_port()}/x.zip")

    with pytest.raises(DatasetUnavailableError) as raised:
        load_dataset("lastfm-2k", tmp_path / "no-data")
    message = str(raised.value)
    assert "GFM_DATA_DIR" in message
    assert "GFM_LASTFM_2K_URL" in message
    assert str(tmp_path / "no-data" / "lastfm-2k") in message
    assert isinstance(raised.value, FileNotFoundError)


def test_git_blob_id_and_line_count():
    # `git hash-object` of an empty file and of "hello\n".
    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert count_lines(b"a\nb\n") == 2
    assert count_lines(b"a\nb") == 2
    assert count_lines(b"") == 0
