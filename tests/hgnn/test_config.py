"""Tests of HGNNConfig and ClusterConfig."""

from __future__ import annotations

import pytest

from gfm.hgnn import ClusterConfig, HGNNConfig


def test_from_dict_empty_gives_defaults():
    config = HGNNConfig.from_dict({})
    assert config == HGNNConfig()
    assert config.num_layers == 2
    assert config.num_neighbors == [10, 5]
    assert config.launcher == "local"


def test_from_dict_unknown_key_names_it():
    with pytest.raises(ValueError, match="unknown HGNN settings \\['hiden_dim'\\]"):
        HGNNConfig.from_dict({"hiden_dim": 64})


def test_from_dict_nested_cluster_settings():
    config = HGNNConfig.from_dict(
        {"cluster": {"namespace": "ml", "worker_replicas": 4}}
    )
    assert isinstance(config.cluster, ClusterConfig)
    assert config.cluster.namespace == "ml"
    assert config.cluster.worker_replicas == 4


def test_cluster_unknown_key_names_it():
    with pytest.raises(ValueError, match="unknown HGNN cluster settings \\['gpus'\\]"):
        HGNNConfig.from_dict({"cluster": {"gpus": 2}})


def test_to_dict_round_trips():
    config = HGNNConfig(hidden_dim=64, out_dim=32, num_neighbors=[4, 2], margin=0.3)
    again = HGNNConfig.from_dict(config.to_dict())
    assert again == config
    assert again.cluster == config.cluster


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"num_neighbors": [10]}, "one fan-out per layer"),
        ({"num_neighbors": [10, 0]}, "must be positive, or -1"),
        ({"inference_num_neighbors": [-2, 5]}, "must be positive, or -1"),
        ({"valid_fraction": 1.0}, "valid_fraction"),
        ({"margin": 0.0}, "margin"),
        ({"batch_size": 0}, "batch_size"),
        ({"edges_per_relation": 0}, "edges_per_relation"),
        ({"launcher": "slurm"}, "launcher"),
        ({"early_stopping_metric": "loss"}, "early_stopping_metric"),
        ({"max_failures": -2}, "max_failures"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_invalid_value_raises(values, message):
    with pytest.raises(ValueError, match=message):
        HGNNConfig.from_dict(values)


def test_inference_fanouts_default_to_every_edge():
    assert HGNNConfig(num_neighbors=[6, 3]).inference_fanouts == [-1, -1]
    assert HGNNConfig(num_layers=3, num_neighbors=[4, 4, 4]).inference_fanouts == [
        -1,
        -1,
        -1,
    ]
    assert HGNNConfig(inference_num_neighbors=[6, 3]).inference_fanouts == [6, 3]


def test_paper_schedule():
    config = HGNNConfig.paper()
    assert config.max_epochs == 50
    assert config.patience == 10
    assert config.lr == 1e-3
    assert config.batch_size == 256
    assert config.edges_per_relation is None
    assert HGNNConfig.paper(max_epochs=5).max_epochs == 5


def test_integral_floats_become_ints():
    config = HGNNConfig.from_dict(
        {"hidden_dim": 64.0, "num_neighbors": [4.0, 2.0], "seed": 3.0}
    )
    assert config.hidden_dim == 64
    assert isinstance(config.hidden_dim, int)
    assert config.num_neighbors == [4, 2]
    assert isinstance(config.seed, int)
    assert config.margin == 0.2
    with pytest.raises(ValueError, match="hidden_dim=64.5"):
        HGNNConfig.from_dict({"hidden_dim": 64.5})
