"""Fixtures of the serving tests: a fake Kubernetes custom-objects API."""

from __future__ import annotations

import copy
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

    It stores InferenceServices as the API server would (serialized JSON,
    ``metadata.generation`` bumped on every write) and reports one ready
    only after ``ready_after`` reads following a write; ``ready_after=None``
    never reports ready.
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


@pytest.fixture
def card_bundle(tmp_path):
    """Write a bundle's ``bundle.json`` and model cards; return its folder."""
    from gfm import storage

    def write(version: str, recalls: dict[str, float | None], eval_k: int = 20) -> str:
        root = tmp_path / f"bundle-{version}"
        storage.write_json(root / "bundle.json", {
            "format_version": 1, "model_version": version, "products": sorted(recalls)})
        for product, recall in recalls.items():
            storage.write_json(root / "products" / product / "model_card.json", {
                "product": product,
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
