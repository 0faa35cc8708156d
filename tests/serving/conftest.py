"""Fixtures of the serving tests: a fake Kubernetes custom-objects API."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from gfm.serving.kserve_import import kserve


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch, as the API server does for CRs."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeCustomObjectsApi:
    """An in-memory stand-in for ``kubernetes.client.CustomObjectsApi``.

    It stores InferenceServices as the API server would: serialized JSON,
    with ``metadata.generation`` bumped on every write. An object reports
    ready only after ``ready_after`` reads following a write, and never
    when ``ready_after`` is ``None``.
    """

    def __init__(self, ready_after: int | None = 1):
        self.objects: dict[tuple[str, str], dict] = {}
        self.calls: list[tuple[str, dict]] = []
        self.ready_after = ready_after
        self._reads_since_write = 0

    def _key(self, namespace: str, name: str) -> tuple[str, str]:
        return namespace, name

    def _not_found(self, name: str) -> ApiException:
        return ApiException(status=404, reason=f"inferenceservices {name!r} not found")

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        sent = ApiClient().sanitize_for_serialization(body)
        self.calls.append(("create", {"group": group, "version": version,
                                      "namespace": namespace, "plural": plural,
                                      "body": sent}))
        key = self._key(namespace, sent["metadata"]["name"])
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        stored = copy.deepcopy(sent)
        stored["metadata"]["generation"] = 1
        self.objects[key] = stored
        self._reads_since_write = 0
        return copy.deepcopy(stored)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        sent = ApiClient().sanitize_for_serialization(body)
        self.calls.append(("patch", {"group": group, "version": version,
                                     "namespace": namespace, "plural": plural,
                                     "name": name, "body": sent}))
        key = self._key(namespace, name)
        if key not in self.objects:
            raise self._not_found(name)
        stored = merge_patch(self.objects[key], sent)
        stored["metadata"]["generation"] = self.objects[key]["metadata"]["generation"] + 1
        self.objects[key] = stored
        self._reads_since_write = 0
        return copy.deepcopy(stored)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("get", {"namespace": namespace, "name": name}))
        key = self._key(namespace, name)
        if key not in self.objects:
            raise self._not_found(name)
        stored = self.objects[key]
        self._reads_since_write += 1
        if self.ready_after is not None and self._reads_since_write > self.ready_after:
            stored["status"] = {
                "observedGeneration": stored["metadata"]["generation"],
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        elif "status" not in stored:
            stored["status"] = {"conditions": [{"type": "Ready", "status": "False",
                                                "reason": "RevisionMissing"}]}
        return copy.deepcopy(stored)

    def writes(self) -> list[tuple[str, dict]]:
        return [call for call in self.calls if call[0] in ("create", "patch")]


FAKE_KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    # Never contacted: every call goes to FakeCustomObjectsApi.
    "clusters": [{"name": "fake", "cluster": {"server": "https://127.0.0.1:9"}}],
    "users": [{"name": "fake", "user": {"token": "fake-token"}}],
    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
    "current-context": "fake",
}


@pytest.fixture
def fake_api() -> FakeCustomObjectsApi:
    return FakeCustomObjectsApi()


@pytest.fixture
def kserve_client(fake_api):
    """A real ``KServeClient`` whose Kubernetes custom-objects API is the fake."""
    client = kserve.KServeClient(config_dict=FAKE_KUBECONFIG, persist_config=False)
    client.api_instance = fake_api
    return client


# The data snapshot of the cards card_bundle writes, as export_products
# stores it under "data".
CARD_DATA = {"dataset": "movielens-1m", "users": 6040, "interactions": 1000209,
             "split": {"protocols": ["leave_last_n"], "settings": {"n": 1}}}


@pytest.fixture
def card_bundle(tmp_path):
    """Write a bundle's ``bundle.json`` and model cards, and return its folder.

    The function takes the version and a recall per product; ``eval_k``,
    ``data`` and ``folder`` override the K, the data snapshot and the
    folder name below ``tmp_path``.
    """
    from gfm import storage

    def write(version: str, recalls: dict[str, float | None], eval_k: int = 20,
              data: dict | None = None, folder: str | None = None) -> str:
        root = tmp_path / (folder or f"bundle-{version}")
        storage.write_json(root / "bundle.json", {
            "format_version": 1, "model_version": version, "products": sorted(recalls)})
        for product, recall in recalls.items():
            storage.write_json(root / "products" / product / "model_card.json", {
                "product": product, "model_version": version, "item_types": [product],
                "data": CARD_DATA if data is None else data,
                "metrics": {"best_valid_recall": recall, "eval_k": eval_k}})
        return str(root)

    return write


def _schema_errors(value: Any, schema: dict, path: str, errors: list[str]) -> None:
    # Kubernetes prunes fields a structural schema does not declare, so an
    # undeclared field is silently dropped; report it like a schema error.
    if isinstance(value, dict) and "properties" in schema:
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            for key in value:
                if key not in schema["properties"]:
                    errors.append(f"{path}.{key}: not in the CRD schema (would be pruned)")
        for key, child in value.items():
            if key in schema["properties"]:
                _schema_errors(child, schema["properties"][key], f"{path}.{key}", errors)
    elif isinstance(value, list) and "items" in schema:
        for position, child in enumerate(value):
            _schema_errors(child, schema["items"], f"{path}[{position}]", errors)


@pytest.fixture(scope="session")
def inference_service_errors():
    """Return a function listing schema errors and pruned fields of an
    InferenceService, checked against the v1beta1 CRD in ``GFM_CRDS_DIR``."""
    import jsonschema
    import yaml

    from gfm import settings

    crds = settings.crds_dir()
    if crds is None:
        pytest.fail("GFM_CRDS_DIR is not set: point it at the folder of KServe's CRDs")
    # The CRD is about 2 MB of YAML: the C loader reads it in seconds, the
    # pure-Python one in tens of seconds.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((crds / "serving.kserve.io_inferenceservices.yaml").read_text(),
                    Loader=loader)
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = version["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft7Validator(schema)

    def errors(document: dict) -> list[str]:
        found = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                 for e in validator.iter_errors(document)]
        _schema_errors(document, schema, "", found)
        return found

    return errors


# Users of the MovieLens-1M slice the test bundle is trained on.
SLICE_USERS = 120


@dataclass
class TestBundle:
    """A serving bundle exported from a small real training run."""

    uri: str
    known_user: str
    recent_items: list[str]
    features_only_user: str


def collaborative_embeddings(train, items) -> Any:
    """Item factors from an SVD of the training item-user matrix.

    They stand in for the HGNN embeddings, which would take minutes to train,
    and cover every catalog movie (zero rows for movies without ratings).
    """
    import numpy as np

    from gfm.embeddings import ItemEmbeddings

    item_ids = items["item_id"].tolist()
    row = {item_id: position for position, item_id in enumerate(item_ids)}
    users = {user: column for column, user in enumerate(sorted(train["user_id"].unique()))}
    matrix = np.zeros((len(item_ids), len(users)), dtype=np.float32)
    matrix[train["item_id"].map(row).to_numpy(), train["user_id"].map(users).to_numpy()] = 1.0
    left, singular, _ = np.linalg.svd(matrix, full_matrices=False)
    factors = (left[:, :24] * np.sqrt(singular[:24])).astype(np.float32)
    return ItemEmbeddings(item_ids, items["item_type"].tolist(), factors,
                          {"model": "svd-of-train"})


@pytest.fixture(scope="session")
def ml1m_bundle(data_dir, tmp_path_factory) -> TestBundle:
    """A one-product bundle (``movie``) trained on the first MovieLens-1M users."""
    from gfm.data.movielens import load_movielens_1m
    from gfm.data.splits import leave_last_n_split
    from gfm.twotower import TwoTowerConfig, train_two_tower
    from gfm.twotower.bundle import export_bundle

    dataset = load_movielens_1m(data_dir)
    ordered = sorted(dataset.interactions["user_id"].unique(), key=int)
    keep = ordered[:SLICE_USERS]
    interactions = dataset.interactions[dataset.interactions["user_id"].isin(keep)]
    # One more user has features but no interactions, like a new sign-up.
    with_features = keep + [ordered[SLICE_USERS]]
    users = dataset.users[dataset.users["user_id"].isin(with_features)].reset_index(drop=True)
    split = leave_last_n_split(interactions.reset_index(drop=True))
    embeddings = collaborative_embeddings(split.train, dataset.items)

    config = TwoTowerConfig(tower_dims=(32, 16), use_llm=False, max_epochs=1,
                            batch_size=512, seed=0)
    # A second product over the same items, without user features, so one
    # request can mix products whose towers differ.
    products = {
        "movie": train_two_tower("movie", ["movie"], split.train, split.valid,
                                 dataset.items, users=users, hgnn=embeddings, llm=None,
                                 config=config),
        "movie_alt": train_two_tower("movie_alt", ["movie"], split.train, split.valid,
                                     dataset.items, users=None, hgnn=embeddings, llm=None,
                                     config=TwoTowerConfig.from_dict(dict(
                                         config.to_dict(), seed=1,
                                         use_user_features=False))),
    }
    uri = str(tmp_path_factory.mktemp("bundles") / "ml1m")
    card = {"data": {"dataset": dataset.name, "users": SLICE_USERS}}
    export_bundle(uri, products, histories=split.train, users=users,
                  hgnn=embeddings, llm=None, model_version="ml1m-test-1",
                  model_cards={"movie": card, "movie_alt": card})

    known_user = keep[0]
    consumed = set(split.train.loc[split.train["user_id"] == known_user, "item_id"])
    popular = split.train["item_id"].value_counts().index.tolist()
    recent = [item for item in popular if item not in consumed][:5]
    return TestBundle(uri=uri, known_user=known_user, recent_items=recent,
                      features_only_user=ordered[SLICE_USERS])


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_http(self, path: str, timeout_s: float = 240.0) -> int:
        return wait_for_http(self, path, timeout_s)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(bundle_uri: str, log_path: Path, config: dict | None = None
                 ) -> RunningServer:
    """Start ``gfm serve`` on 127.0.0.1 in a child process."""
    port = free_port()
    command = [sys.executable, "-m", "gfm.cli", "serve", "--bundle", bundle_uri,
               "--port", str(port)]
    if config:
        command += ["--config", json.dumps(config)]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, GFM_LOG_LEVEL="INFO"))
    return RunningServer(f"http://127.0.0.1:{port}", process, log_path)


def wait_for_http(server: RunningServer, path: str, timeout_s: float = 240.0) -> int:
    """Poll ``path`` until the server responds; return the status code.

    The timeout is generous because importing torch and KServe takes tens of
    seconds when other jobs share the 2 CPU cores.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"gfm serve exited with {server.process.returncode}:\n{server.log()}")
        try:
            return httpx.get(server.url + path, timeout=5).status_code
        except httpx.TransportError:
            time.sleep(0.5)
    pytest.fail(f"gfm serve did not respond on {server.url} within {timeout_s} s:\n"
                f"{server.log()}")


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def launch_server(tmp_path):
    """Return a function that starts ``gfm serve`` on a bundle; every server
    it started is stopped when the test ends."""
    started: list[RunningServer] = []

    def launch(bundle_uri: str, config: dict | None = None) -> RunningServer:
        server = start_server(bundle_uri, tmp_path / f"server-{len(started)}.log", config)
        started.append(server)
        return server

    yield launch
    for server in started:
        stop_server(server)


@pytest.fixture(scope="session")
def bundle_server(ml1m_bundle, tmp_path_factory):
    """Return a started, ready server of the MovieLens-1M bundle, one per name."""
    from gfm.serving.client import RecommendClient

    servers: dict[str, RunningServer] = {}

    def get(name: str, config: dict | None = None) -> RunningServer:
        if name not in servers:
            log_path = tmp_path_factory.mktemp("server") / f"{name}.log"
            server = start_server(ml1m_bundle.uri, log_path, config)
            servers[name] = server
            wait_for_http(server, "/")
            with RecommendClient(server.url) as client:
                client.wait_ready(timeout_s=240)
        return servers[name]

    yield get
    for server in servers.values():
        stop_server(server)
