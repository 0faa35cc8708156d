"""Deploy decisions and the exact InferenceService sent through KServeClient.

The Kubernetes custom-objects API is the only fake: KServeClient's own code
runs, and the fake stores what it receives as the API server would.
"""

from __future__ import annotations

import json

import pytest
from kubernetes.config import ConfigException

from gfm.serving import deploy as deploy_module
from gfm.serving.deploy import (
    MODEL_VERSION_ANNOTATION,
    DeployTimeoutError,
    build_inference_service,
    deploy_bundle,
    deployed_storage_uri,
    promote_canary,
    publish_bundle,
    serving_uri,
    to_json,
)
from gfm.serving.deploy_config import DeployConfig
from gfm.serving.gate import read_bundle_cards

FAST = dict(poll_interval_s=0.01, ready_timeout_s=5.0, image="registry.test/gfm-serve:1")


def container(body):
    [only] = body["spec"]["predictor"]["containers"]
    return only


def test_deploy_creates_missing_service(card_bundle, kserve_client, fake_api,
                                        inference_service_errors):
    bundle = card_bundle("v1", {"movie": 0.2})
    result = deploy_bundle(bundle, DeployConfig(**FAST), kserve_client)

    assert result.action == "created"
    assert result.ready is True
    assert result.deployed_version is None
    assert result.gate.passed
    [(method, call)] = fake_api.writes()
    assert method == "create"
    assert call["group"] == "serving.kserve.io"
    assert call["version"] == "v1beta1"
    assert call["namespace"] == "gfm"
    assert call["plural"] == "inferenceservices"
    sent = call["body"]
    assert sent == result.inference_service
    assert inference_service_errors(sent) == []
    assert sent["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "Knative", MODEL_VERSION_ANNOTATION: "v1"}
    predictor = sent["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor
    assert predictor["minReplicas"] == 1
    assert predictor["maxReplicas"] == 4
    assert predictor["serviceAccountName"] == "gfm-workload"
    assert container(sent)["image"] == "registry.test/gfm-serve:1"
    assert container(sent)["env"][0] == {"name": "STORAGE_URI", "value": bundle}
    assert container(sent)["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"},
                                            "requests": {"cpu": "1", "memory": "2Gi"}}
    assert container(sent)["readinessProbe"]["httpGet"] == {"path": "/v1/models/gfm",
                                                            "port": 8080}


def test_deploy_patches_when_gate_passes(card_bundle, kserve_client, fake_api,
                                         inference_service_errors):
    first = card_bundle("v1", {"movie": 0.2})
    deploy_bundle(first, DeployConfig(**FAST), kserve_client)
    second = card_bundle("v2", {"movie": 0.25})
    result = deploy_bundle(second, DeployConfig(**FAST), kserve_client)

    assert result.action == "patched"
    assert result.deployed_version == "v1"
    assert result.ready is True
    method, call = fake_api.writes()[-1]
    assert method == "patch"
    assert call["name"] == "gfm-recommender"
    sent = call["body"]
    assert inference_service_errors(sent) == []
    assert sent["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert sent["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == "v2"
    stored = fake_api.objects[("gfm", "gfm-recommender")]
    assert deployed_storage_uri(stored) == second
    assert stored["metadata"]["generation"] == 2


def test_deploy_skips_when_gate_fails(card_bundle, kserve_client, fake_api):
    deploy_bundle(card_bundle("v1", {"movie": 0.2}), DeployConfig(**FAST), kserve_client)
    writes = len(fake_api.writes())
    result = deploy_bundle(card_bundle("v2", {"movie": 0.1}), DeployConfig(**FAST),
                           kserve_client)

    assert result.action == "skipped"
    assert result.ready is False
    assert not result.gate.passed
    assert "below the threshold 0.2" in result.gate.reasons[0]
    assert len(fake_api.writes()) == writes
    stored = fake_api.objects[("gfm", "gfm-recommender")]
    assert stored["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == "v1"


def test_deploy_force_overrides_gate(card_bundle, kserve_client, fake_api):
    deploy_bundle(card_bundle("v1", {"movie": 0.2}), DeployConfig(**FAST), kserve_client)
    result = deploy_bundle(card_bundle("v2", {"movie": 0.1}),
                           DeployConfig(force=True, **FAST), kserve_client)
    assert result.action == "patched"
    assert not result.gate.passed
    assert fake_api.writes()[-1][0] == "patch"


def test_deploy_skips_same_version(card_bundle, kserve_client, fake_api):
    bundle = card_bundle("v1", {"movie": 0.2})
    deploy_bundle(bundle, DeployConfig(**FAST), kserve_client)
    result = deploy_bundle(bundle, DeployConfig(**FAST), kserve_client)
    assert result.action == "skipped"
    assert "already deployed" in result.gate.reasons[0]
    assert len(fake_api.writes()) == 1


def test_deploy_skips_unreadable_deployed_bundle(card_bundle, kserve_client, fake_api,
                                                 tmp_path):
    config = DeployConfig(**FAST)
    body = build_inference_service(config, str(tmp_path / "deleted"), "v0", canary=False)
    kserve_client.create(body, namespace="gfm")
    result = deploy_bundle(card_bundle("v2", {"movie": 0.3}), config, kserve_client)
    assert result.action == "skipped"
    assert "could not be read" in result.gate.reasons[0]
    assert len(fake_api.writes()) == 1


def test_deploy_times_out_when_never_ready(card_bundle, kserve_client, fake_api):
    fake_api.ready_after = None
    config = DeployConfig(poll_interval_s=0.01, ready_timeout_s=0.05)
    with pytest.raises(DeployTimeoutError, match="RevisionMissing"):
        deploy_bundle(card_bundle("v1", {"movie": 0.2}), config, kserve_client)
    assert fake_api.writes()[0][0] == "create"


def test_deploy_waits_for_new_generation(card_bundle, kserve_client, fake_api):
    deploy_bundle(card_bundle("v1", {"movie": 0.2}), DeployConfig(**FAST), kserve_client)
    # Ready status still describes generation 1 until three reads later.
    fake_api.ready_after = 3
    deploy_bundle(card_bundle("v2", {"movie": 0.3}), DeployConfig(**FAST), kserve_client)
    stored = fake_api.objects[("gfm", "gfm-recommender")]
    assert stored["status"]["observedGeneration"] == 2


def test_deploy_dry_run_sends_nothing(card_bundle, inference_service_errors, monkeypatch):
    # Never reach a cluster from the kubeconfig of the machine running the tests.
    def no_configuration():
        raise ConfigException("Invalid kube-config file. No configuration found.")

    monkeypatch.setattr(deploy_module, "make_client", no_configuration)
    bundle = card_bundle("v1", {"movie": 0.2})
    result = deploy_bundle(bundle, DeployConfig(dry_run=True), client=None)
    assert result.action == "dry_run"
    assert result.ready is False
    assert result.gate.passed
    assert inference_service_errors(result.inference_service) == []
    assert container(result.inference_service)["env"][0]["value"] == bundle
    [note] = result.gate.notes
    assert "no Kubernetes configuration" in note
    assert "compared the candidate with no deployed model" in note


def test_deploy_dry_run_consults_deployed_model(card_bundle, kserve_client, fake_api):
    deploy_bundle(card_bundle("v1", {"movie": 0.2}), DeployConfig(**FAST), kserve_client)
    calls = len(fake_api.calls)
    result = deploy_bundle(card_bundle("v2", {"movie": 0.01}),
                           DeployConfig(dry_run=True, **FAST), kserve_client)

    assert result.action == "dry_run"
    assert result.deployed_version == "v1"
    assert not result.gate.passed
    assert "below the threshold 0.2" in result.gate.reasons[0]
    assert result.gate.notes == []
    assert [method for method, _ in fake_api.calls[calls:]] == ["get"]
    assert result.inference_service["spec"]["predictor"]["canaryTrafficPercent"] == 10


def test_deploy_rejects_bundle_replaced_in_place(card_bundle, kserve_client, fake_api):
    uri = card_bundle("v1", {"movie": 0.30}, folder="latest")
    deploy_bundle(uri, DeployConfig(**FAST), kserve_client)
    # A worse bundle overwrites the deployed one at the same URI.
    assert card_bundle("v2", {"movie": 0.05}, folder="latest") == uri
    result = deploy_bundle(uri, DeployConfig(**FAST), kserve_client)

    assert result.action == "skipped"
    assert not result.gate.passed
    [reason] = result.gate.reasons
    assert f"the deployed bundle {uri!r} now contains model_version 'v2'" in reason
    assert f"{MODEL_VERSION_ANNOTATION} annotation is 'v1'" in reason
    assert len(fake_api.writes()) == 1
    stored = fake_api.objects[("gfm", "gfm-recommender")]
    assert stored["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == "v1"


def test_deploy_serves_versioned_copy(card_bundle, kserve_client, fake_api, tmp_path):
    root = tmp_path / "bundles"
    config = DeployConfig(bundle_root=str(root), **FAST)
    first = card_bundle("v1", {"movie": 0.2}, folder="latest")
    created = deploy_bundle(first, config, kserve_client)
    second = card_bundle("v2", {"movie": 0.25}, folder="latest")
    patched = deploy_bundle(second, config, kserve_client)

    assert created.action == "created"
    assert created.storage_uri == str(root / "v1")
    assert patched.action == "patched"
    assert patched.storage_uri == str(root / "v2")
    assert patched.deployed_version == "v1"
    stored = fake_api.objects[("gfm", "gfm-recommender")]
    assert deployed_storage_uri(stored) == str(root / "v2")
    # The copy of v1 was not touched when "latest" was overwritten.
    assert read_bundle_cards(str(root / "v1")).model_version == "v1"
    assert read_bundle_cards(str(root / "v2")).cards["movie"]["metrics"][
        "best_valid_recall"] == 0.25


def test_deploy_dry_run_copies_nothing(card_bundle, kserve_client, tmp_path):
    root = tmp_path / "bundles"
    config = DeployConfig(bundle_root=str(root), dry_run=True, **FAST)
    result = deploy_bundle(card_bundle("v1", {"movie": 0.2}), config, kserve_client)
    assert result.action == "dry_run"
    assert container(result.inference_service)["env"][0]["value"] == str(root / "v1")
    assert not root.exists()


def test_publish_bundle_keeps_existing_copy(card_bundle, tmp_path):
    candidate = read_bundle_cards(card_bundle("v1", {"movie": 0.2}))
    target = str(tmp_path / "bundles" / "v1")
    assert publish_bundle(candidate, target) is True
    assert publish_bundle(candidate, target) is False
    copied = json.loads((tmp_path / "bundles" / "v1" / "bundle.json").read_text())
    assert copied == candidate.manifest


def test_publish_bundle_rejects_other_bundle(card_bundle, tmp_path):
    target = str(tmp_path / "bundles" / "v1")
    publish_bundle(read_bundle_cards(card_bundle("v1", {"movie": 0.2})), target)
    other = read_bundle_cards(card_bundle("v1", {"movie": 0.3, "music": 0.1},
                                          folder="other-v1"))
    with pytest.raises(ValueError, match="already contains another bundle"):
        publish_bundle(other, target)
    assert read_bundle_cards(target).cards["movie"]["metrics"]["best_valid_recall"] == 0.2


@pytest.mark.parametrize("version", ["a/b", "..", "", "-v1", "v 1"])
def test_serving_uri_rejects_unsafe_version(version):
    with pytest.raises(ValueError, match="cannot name a folder below bundle_root"):
        serving_uri("gs://b/run/bundle", version, DeployConfig(bundle_root="gs://b/bundles"))


def test_serving_uri_without_bundle_root():
    assert serving_uri("gs://b/run/bundle", "v1", DeployConfig()) == "gs://b/run/bundle"
    assert serving_uri("gs://b/run/bundle", "v1",
                       DeployConfig(bundle_root="gs://b/bundles/")) == "gs://b/bundles/v1"


def test_promote_canary_patches_traffic(card_bundle, kserve_client, fake_api):
    deploy_bundle(card_bundle("v1", {"movie": 0.2}), DeployConfig(**FAST), kserve_client)
    deploy_bundle(card_bundle("v2", {"movie": 0.3}), DeployConfig(**FAST), kserve_client)
    promote_canary(DeployConfig(**FAST), kserve_client)
    method, call = fake_api.writes()[-1]
    assert method == "patch"
    assert call["body"] == {"apiVersion": "serving.kserve.io/v1beta1",
                            "kind": "InferenceService",
                            "spec": {"predictor": {"canaryTrafficPercent": 100}}}
    stored = fake_api.objects[("gfm", "gfm-recommender")]
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 100
    assert deployed_storage_uri(stored).endswith("bundle-v2")


def test_promote_canary_requires_service(kserve_client):
    with pytest.raises(ValueError, match="does not exist"):
        promote_canary(DeployConfig(), kserve_client)


def test_build_inference_service_passes_serving_settings(inference_service_errors):
    config = DeployConfig(serving={"max_k": 100, "index": "ivf"}, deployment_mode="Standard",
                          canary_traffic_percent=100)
    body = to_json(build_inference_service(config, "gs://b/bundles/v3", "v3", canary=True))
    assert inference_service_errors(body) == []
    assert body["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert container(body)["args"][-1] == '--config={"index": "ivf", "max_k": 100}'
