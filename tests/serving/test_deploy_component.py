"""The deploy KFP component, called through ``python_func``."""

from __future__ import annotations

import json

from gfm.components.deploy import deploy
from kfp import dsl
from kubernetes.config import ConfigException

from gfm.serving import deploy as deploy_module


def artifacts(tmp_path, bundle):
    model = dsl.Model(name="bundle", uri=bundle, metadata={})
    decision = dsl.Artifact(name="decision", uri=str(tmp_path / "decision"), metadata={})
    return model, decision


def test_deploy_component_dry_run(card_bundle, tmp_path, inference_service_errors,
                                  monkeypatch):
    def no_configuration():
        raise ConfigException("Invalid kube-config file. No configuration found.")

    # Never reach a cluster from the kubeconfig of the machine running the tests.
    monkeypatch.setattr(deploy_module, "make_client", no_configuration)
    model, decision = artifacts(tmp_path, card_bundle("v1", {"movie": 0.2}))
    action = deploy.python_func(bundle=model, config={"dry_run": True}, decision=decision)

    assert action == "dry_run"
    written = json.loads((tmp_path / "decision" / "deploy.json").read_text())
    assert written["action"] == "dry_run"
    assert written["model_version"] == "v1"
    assert inference_service_errors(written["inference_service"]) == []
    assert decision.metadata["action"] == "dry_run"
    assert decision.metadata["gate_passed"] is True
    assert decision.metadata["gate_notes"] == 1
    assert decision.metadata["model_version"] == "v1"
    assert decision.metadata["storage_uri"] == model.uri


def test_deploy_component_creates_then_skips(card_bundle, tmp_path, kserve_client,
                                             fake_api, monkeypatch):
    monkeypatch.setattr(deploy_module, "make_client", lambda: kserve_client)
    config = {"poll_interval_s": 0.01, "ready_timeout_s": 5.0}

    model, decision = artifacts(tmp_path, card_bundle("v1", {"movie": 0.2}))
    assert deploy.python_func(bundle=model, config=config, decision=decision) == "created"
    assert decision.metadata["ready"] is True

    model, decision = artifacts(tmp_path / "second", card_bundle("v2", {"movie": 0.1}))
    assert deploy.python_func(bundle=model, config=config, decision=decision) == "skipped"
    assert decision.metadata["gate_passed"] is False
    assert decision.metadata["deployed_version"] == "v1"
    assert decision.metadata["gate_reasons"] == 1
    assert [method for method, _ in fake_api.writes()] == ["create"]
