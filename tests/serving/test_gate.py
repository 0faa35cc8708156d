"""The promotion gate over model card metrics."""

from __future__ import annotations

import math

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


def test_gate_fails_missing_deployed_metric(card_bundle):
    deployed = read_bundle_cards(card_bundle("v1", {"movie": None}))
    candidate = read_bundle_cards(card_bundle("v2", {"movie": 0.01}))
    result = evaluate_gate(candidate, deployed, DeployConfig())
    assert not result.passed
    assert "deployed model card has no numeric metrics.best_valid_recall" in result.reasons[0]
    assert "allow_missing_baseline" in result.reasons[0]
    assert result.products["movie"]["passed"] is False


def test_gate_allow_missing_baseline_notes_it(card_bundle):
    deployed = read_bundle_cards(card_bundle("v1", {"movie": None}))
    candidate = read_bundle_cards(card_bundle("v2", {"movie": 0.01}))
    allowed = evaluate_gate(candidate, deployed, DeployConfig(allow_missing_baseline=True))
    assert allowed.passed
    assert allowed.reasons == []
    [note] = allowed.notes
    assert "compared with gate_min_value only because allow_missing_baseline" in note
    below = evaluate_gate(candidate, deployed,
                          DeployConfig(allow_missing_baseline=True, gate_min_value=0.05))
    assert not below.passed
    assert "below the threshold 0.05" in below.reasons[0]


def test_gate_notes_new_product(card_bundle):
    deployed = read_bundle_cards(card_bundle("v1", {"movie": 0.2}))
    candidate = read_bundle_cards(card_bundle("v2", {"movie": 0.2, "music": 0.1}))
    result = evaluate_gate(candidate, deployed, DeployConfig())
    assert result.passed
    assert result.notes == ["product 'music' is new (the deployed bundle v1 does not serve "
                            "it), so it is compared with gate_min_value only"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "0.1", True])
def test_deploy_config_rejects_bad_gate_min_value(value):
    with pytest.raises(ValueError, match="gate_min_value must be a finite number"):
        DeployConfig(gate_min_value=value)


def test_gate_fails_cards_of_other_data(card_bundle):
    deployed = read_bundle_cards(card_bundle("v1", {"movie": 0.10},
                                             data={"dataset": "movielens-1m", "users": 6040}))
    candidate = read_bundle_cards(card_bundle("v2", {"movie": 0.11},
                                              data={"dataset": "lastfm-2k", "users": 120}))
    result = evaluate_gate(candidate, deployed, DeployConfig())
    assert not result.passed
    assert "data.dataset 'lastfm-2k' vs deployed 'movielens-1m'" in result.reasons[0]
    narrowed = DeployConfig(gate_require_equal=("product", "metrics.eval_k"))
    assert evaluate_gate(candidate, deployed, narrowed).passed


def test_gate_compares_newer_data_of_same_split(card_bundle):
    split = {"settings": {"protocol": "temporal", "seed": 0}}
    deployed = read_bundle_cards(card_bundle(
        "v1", {"movie": 0.10}, data={"dataset": "movielens-1m", "users": 6040,
                                     "split": split}))
    candidate = read_bundle_cards(card_bundle(
        "v2", {"movie": 0.11}, data={"dataset": "movielens-1m", "users": 6100,
                                     "split": split}))
    assert evaluate_gate(candidate, deployed, DeployConfig()).passed
    same_snapshot = DeployConfig(gate_require_equal=("product", "data"))
    result = evaluate_gate(candidate, deployed, same_snapshot)
    assert not result.passed
    assert "metrics are not comparable: data" in result.reasons[0]


def test_gate_fails_cards_without_data(card_bundle):
    deployed = read_bundle_cards(card_bundle("v1", {"movie": 0.1}, data={}))
    candidate = read_bundle_cards(card_bundle("v2", {"movie": 0.2}, data={}))
    config = DeployConfig(gate_require_equal=("data.dataset",))
    result = evaluate_gate(candidate, deployed, config)
    assert not result.passed
    assert result.reasons == ["product 'movie': metrics are not comparable: data.dataset "
                              "is missing from the candidate and deployed model card"]


def test_gate_fails_other_item_types(card_bundle, tmp_path):
    from gfm import storage

    deployed = read_bundle_cards(card_bundle("v1", {"movie": 0.1}))
    root = card_bundle("v2", {"movie": 0.2})
    card_path = tmp_path / "bundle-v2" / "products" / "movie" / "model_card.json"
    storage.write_json(card_path, dict(storage.read_json(card_path),
                                       item_types=["movie", "tag"]))
    result = evaluate_gate(read_bundle_cards(root), deployed, DeployConfig())
    assert not result.passed
    assert "item_types ['movie', 'tag'] vs deployed ['movie']" in result.reasons[0]


@pytest.mark.parametrize(("change", "message"), [
    ({"product": "book"}, "describes product 'book', but its folder is products/movie"),
    ({"model_version": "other"}, "has model_version 'other', but bundle.json has 'v2'"),
])
def test_read_bundle_cards_rejects_foreign_card(card_bundle, tmp_path, change, message):
    from gfm import storage

    root = card_bundle("v2", {"movie": 7.0})
    card_path = tmp_path / "bundle-v2" / "products" / "movie" / "model_card.json"
    storage.write_json(card_path, dict(storage.read_json(card_path), **change))
    with pytest.raises(ValueError, match=message):
        read_bundle_cards(root)


def test_read_bundle_cards_rejects_list_manifest(tmp_path):
    (tmp_path / "bundle.json").write_text("[]")
    with pytest.raises(ValueError, match="must contain a JSON object, got list"):
        read_bundle_cards(str(tmp_path))
