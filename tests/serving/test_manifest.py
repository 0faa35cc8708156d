"""The InferenceService manifest of manifests/base."""

from __future__ import annotations

from pathlib import Path

import yaml

from gfm.serving.deploy import MODEL_VERSION_ANNOTATION, build_inference_service, to_json
from gfm.serving.deploy_config import DeployConfig

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "base" / "inferenceservice.yaml"


def load_manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_manifest_matches_crd_schema(inference_service_errors):
    assert inference_service_errors(load_manifest()) == []


def test_manifest_sets_serving_fields():
    manifest = load_manifest()
    predictor = manifest["spec"]["predictor"]
    [container] = predictor["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert env["STORAGE_URI"].startswith("gs://")
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    assert predictor["canaryTrafficPercent"] == 10
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["image"].split("/")[-1].startswith("gfm-serve:")


def test_manifest_serves_versioned_path():
    manifest = load_manifest()
    [container] = manifest["spec"]["predictor"]["containers"]
    storage_uri = next(e["value"] for e in container["env"] if e["name"] == "STORAGE_URI")
    version = manifest["metadata"]["annotations"][MODEL_VERSION_ANNOTATION]
    assert storage_uri.rstrip("/").rsplit("/", 1)[-1] == version
    assert "current" not in storage_uri


def test_manifest_matches_deploy_object():
    """The deploy step sends what the manifest declares, except the fields
    it sets per bundle (image tag, STORAGE_URI, model version)."""
    manifest = load_manifest()
    [container] = manifest["spec"]["predictor"]["containers"]
    storage_uri = next(e["value"] for e in container["env"] if e["name"] == "STORAGE_URI")
    version = manifest["metadata"]["annotations"][MODEL_VERSION_ANNOTATION]
    config = DeployConfig(image=container["image"], namespace="gfm")
    built = to_json(build_inference_service(config, storage_uri, version, canary=True))
    built["metadata"].pop("namespace")
    assert built == manifest
