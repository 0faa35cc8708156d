"""Deploy decisions and the exact InferenceService sent through KServeClient.

The Kubernetes custom-objects API is the only fake: KServeClient's own code
runs, and the fake stores what it receives as the API server would.
"""

from __future__ import annotations

import pytest

from gfm.serving.deploy import (
    MODEL_VERSION_ANNOTATION,
    DeployTimeoutError,
    build_inference_service,
    deploy_bundle,
    deployed_storage_uri,
    promote_canary,
    to_json,
)
from gfm.serving.deploy_config import DeployConfig

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


def test_deploy_dry_run_sends_nothing(card_bundle, inference_service_errors):
    bundle = card_bundle("v1", {"movie": 0.2})
    result = deploy_bundle(bundle, DeployConfig(dry_run=True), client=None)
    assert result.action == "dry_run"
    assert result.ready is False
    assert inference_service_errors(result.inference_service) == []
    assert container(result.inference_service)["env"][0]["value"] == bundle


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
