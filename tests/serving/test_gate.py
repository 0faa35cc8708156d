"""The promotion gate over model card metrics."""

from __future__ import annotations

import pytest

from gfm.serving.deploy_config import DeployConfig
from gfm.serving.gate import evaluate_gate, lookup, read_bundle_cards


def test_read_bundle_cards(card_bundle):
    cards = read_bundle_cards(card_bundle("v2", {"movie": 0.2, "music": 0.1}))
    assert cards.model_version == "v2"
    assert sorted(cards.cards) == ["movie", "music"]
    assert cards.cards["movie"]["metrics"]["best_valid_recall"] == 0.2


def test_read_bundle_cards_missing_card(card_bundle, tmp_path):
    root = card_bundle("v2", {"movie": 0.2})
    (tmp_path / "bundle-v2" / "products" / "movie" / "model_card.json").unlink()
    with pytest.raises(FileNotFoundError):
        read_bundle_cards(root)


def test_lookup_dotted_paths():
    card = {"metrics": {"test": {"hr@10": 0.3}}, "k": 10}
    assert lookup(card, "metrics.test.hr@10") == 0.3
    assert lookup(card, "k") == 10
    assert lookup(card, "metrics.valid.hr@10") is None
    assert lookup(card, "k.deeper") is None


def test_gate_passes_without_deployed_model(card_bundle):
    result = evaluate_gate(read_bundle_cards(card_bundle("v2", {"movie": 0.2})), None,
                           DeployConfig())
    assert result.passed
    assert result.reasons == []
    assert result.products["movie"]["candidate"] == 0.2
    assert result.products["movie"]["deployed"] is None


def test_gate_passes_equal_or_better(card_bundle):
    deployed = read_bundle_cards(card_bundle("v1", {"movie": 0.2, "music": 0.1}))
    candidate = read_bundle_cards(card_bundle("v2", {"movie": 0.2, "music": 0.15}))
    result = evaluate_gate(candidate, deployed, DeployConfig())
    assert result.passed
    assert result.products["music"]["threshold"] == pytest.approx(0.1)
    assert result.products["music"]["deployed"] == 0.1


def test_gate_fails_regression_of_one_product(card_bundle):
    deployed = read_bundle_cards(card_bundle("v1", {"movie": 0.2, "music": 0.1}))
    candidate = read_bundle_cards(card_bundle("v2", {"movie": 0.3, "music": 0.09}))
    result = evaluate_gate(candidate, deployed, DeployConfig())
    assert not result.passed
    assert len(result.reasons) == 1
    assert "'music'" in result.reasons[0]
    assert "below the threshold 0.1" in result.reasons[0]
    assert result.products["movie"]["passed"] is True
    assert result.products["music"]["passed"] is False


def test_gate_tolerance_allows_small_drop(card_bundle):
    deployed = read_bundle_cards(card_bundle("v1", {"movie": 0.2}))
    candidate = read_bundle_cards(card_bundle("v2", {"movie": 0.197}))
    assert not evaluate_gate(candidate, deployed, DeployConfig()).passed
    assert evaluate_gate(candidate, deployed, DeployConfig(gate_tolerance=0.02)).passed


def test_gate_min_value(card_bundle):
    candidate = read_bundle_cards(card_bundle("v2", {"movie": 0.04}))
    result = evaluate_gate(candidate, None, DeployConfig(gate_min_value=0.05))
    assert not result.passed
    assert "threshold 0.05" in result.reasons[0]


def test_gate_fails_missing_metric(card_bundle):
    candidate = read_bundle_cards(card_bundle("v2", {"movie": None}))
    result = evaluate_gate(candidate, None, DeployConfig())
    assert not result.passed
    assert "no numeric metrics.best_valid_recall" in result.reasons[0]


def test_gate_fails_dropped_product(card_bundle):
    deployed = read_bundle_cards(card_bundle("v1", {"movie": 0.2, "music": 0.1}))
    candidate = read_bundle_cards(card_bundle("v2", {"movie": 0.3}))
    result = evaluate_gate(candidate, deployed, DeployConfig())
    assert not result.passed
    assert result.reasons == [
        "product 'music' is served by the deployed bundle v1 but missing from the candidate"
    ]


def test_gate_fails_incomparable_cards(card_bundle):
    deployed = read_bundle_cards(card_bundle("v1", {"movie": 0.2}, eval_k=10))
    candidate = read_bundle_cards(card_bundle("v2", {"movie": 0.3}, eval_k=20))
    result = evaluate_gate(candidate, deployed, DeployConfig())
    assert not result.passed
    assert "not comparable: metrics.eval_k 20 vs deployed 10" in result.reasons[0]
    assert evaluate_gate(candidate, deployed, DeployConfig(gate_require_equal=())).passed


def test_deploy_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown deploy settings \\['replicas'\\]"):
        DeployConfig.from_dict({"replicas": 2})
    with pytest.raises(ValueError, match="Knative"):
        DeployConfig(deployment_mode="Standard")
    assert DeployConfig(deployment_mode="Standard", canary_traffic_percent=100)
    with pytest.raises(ValueError, match="deployment_mode"):
        DeployConfig(deployment_mode="RawDeployment")
    with pytest.raises(ValueError, match="min_replicas"):
        DeployConfig(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="unknown serving settings"):
        DeployConfig(serving={"topk": 3})
