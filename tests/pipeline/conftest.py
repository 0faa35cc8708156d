"""Fixtures of the pipeline tests: compiled packages, a KFP API double, log records."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlparse

import pytest

from gfm.pipelines.compile import compile_pipeline
from gfm.pipelines.placement import gke_placement
from gfm.pipelines.run_config import load_run_config


@pytest.fixture(scope="session")
def cluster_package(tmp_path_factory) -> Path:
    """The pipeline compiled for GKE with the MovieLens-1M settings."""
    out = tmp_path_factory.mktemp("compiled") / "cluster.yaml"
    return compile_pipeline(
        out, run_config=load_run_config("movielens-1m"), placement=gke_placement()
    )


@pytest.fixture(scope="session")
def local_package(tmp_path_factory) -> Path:
    """The pipeline compiled without placement, as ``kfp.local`` runs it."""
    out = tmp_path_factory.mktemp("compiled") / "local.yaml"
    return compile_pipeline(out, run_config=load_run_config("movielens-1m"))


class _RecordList(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged() -> Iterator[Callable[[str], list[logging.LogRecord]]]:
    """Collect the records of named loggers, at INFO and above, until teardown.

    ``logged("gfm.pipelines.cli")`` returns the list that the logger's
    records are appended to. ``caplog`` misses them once
    ``gfm.logging_setup.configure_logging`` has run, because it stops the
    ``gfm`` logger's propagation to the root logger.
    """
    attached: list[tuple[logging.Logger, _RecordList, int]] = []

    def collect(name: str) -> list[logging.LogRecord]:
        logger = logging.getLogger(name)
        handler = _RecordList()
        attached.append((logger, handler, logger.level))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        return handler.records

    yield collect
    for logger, handler, level in attached:
        logger.removeHandler(handler)
        logger.setLevel(level)


@dataclass
class FakeKfpApi:
    """A KFP v2beta1 REST API on 127.0.0.1 that stores what clients send.

    It implements the calls ``kfp.Client`` makes to create experiments,
    runs and recurring runs, list them by display name and delete recurring
    runs. Nothing runs.
    """

    url: str = ""
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    recurring_runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def bodies(self, method: str, path: str) -> list[Any]:
        """Return the JSON bodies of the requests with this method and path."""
        return [body for m, p, body in self.requests if m == method and p == path]


def _display_name_filter(query: dict[str, list[str]]) -> str | None:
    if "filter" not in query:
        return None
    predicates = json.loads(query["filter"][0]).get("predicates", [])
    for predicate in predicates:
        if predicate.get("key") == "display_name":
            return predicate.get("stringValue", predicate.get("string_value"))
    return None


def _handler(api: FakeKfpApi):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            return

        def _reply(self, status: int, document: Any) -> None:
            payload = json.dumps(document).encode("utf-8")
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _body(self) -> Any:
            length = int(self.headers.get("content-length") or 0)
            return json.loads(self.rfile.read(length) or b"null")

        def do_GET(self):
            url = urlparse(self.path)
            query = parse_qs(url.query)
            api.requests.append(("GET", url.path, dict(query)))
            name = _display_name_filter(query)
            if url.path == "/apis/v2beta1/healthz":
                return self._reply(200, {"multi_user": False})
            if url.path == "/apis/v2beta1/experiments":
                found = [e for e in api.experiments.values()
                         if name is None or e["display_name"] == name]
                return self._reply(200, {"experiments": found, "total_size": len(found)})
            if url.path == "/apis/v2beta1/recurringruns":
                experiment = query.get("experiment_id", [None])[0]
                found = [r for r in api.recurring_runs.values()
                         if (name is None or r["display_name"] == name)
                         and (experiment is None or r["experiment_id"] == experiment)]
                return self._reply(200, {"recurringRuns": found, "total_size": len(found)})
            return self._reply(404, {"error": f"no route {url.path}"})

        def do_POST(self):
            url = urlparse(self.path)
            body = self._body()
            api.requests.append(("POST", url.path, body))
            if url.path == "/apis/v2beta1/experiments":
                experiment = dict(body, experiment_id=f"exp-{uuid.uuid4().hex[:8]}")
                api.experiments[experiment["experiment_id"]] = experiment
                return self._reply(200, experiment)
            if url.path == "/apis/v2beta1/runs":
                run = dict(body, run_id=f"run-{uuid.uuid4().hex[:8]}", state="PENDING")
                api.runs[run["run_id"]] = run
                return self._reply(200, run)
            if url.path == "/apis/v2beta1/recurringruns":
                recurring = dict(body, recurring_run_id=f"rec-{uuid.uuid4().hex[:8]}")
                api.recurring_runs[recurring["recurring_run_id"]] = recurring
                return self._reply(200, recurring)
            return self._reply(404, {"error": f"no route {url.path}"})

        def do_DELETE(self):
            url = urlparse(self.path)
            api.requests.append(("DELETE", url.path, None))
            prefix = "/apis/v2beta1/recurringruns/"
            if url.path.startswith(prefix):
                api.recurring_runs.pop(url.path[len(prefix):], None)
                return self._reply(200, {})
            return self._reply(404, {"error": f"no route {url.path}"})

    return Handler


@pytest.fixture
def kfp_api(tmp_path, monkeypatch):
    """A fresh :class:`FakeKfpApi` served on a free port of 127.0.0.1."""
    # kfp.Client reads and writes ~/.config/kfp; keep that in tmp_path.
    monkeypatch.setenv("HOME", str(tmp_path))
    api = FakeKfpApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)
