"""Tests of HGNNConfig and ClusterConfig."""

from __future__ import annotations

import re

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
        ({"isolate_fraction": 1.0}, "isolate_fraction=1.0 must lie in"),
        ({"isolate_fraction": -0.1}, "isolate_fraction=-0.1 must lie in"),
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


NAN = float("nan")
INF = float("inf")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": NAN}, "lr=nan must be a finite number"),
        ({"lr": INF}, "lr=inf must be a finite number"),
        ({"margin": NAN}, "margin=nan must be a finite number"),
        ({"weight_decay": NAN}, "weight_decay=nan must be a finite number"),
        ({"dropout": NAN}, "dropout=nan must be a finite number"),
        ({"isolate_fraction": NAN}, "isolate_fraction=nan must be a finite number"),
        ({"valid_fraction": "0.1"}, "valid_fraction='0.1' must be a finite number"),
        ({"edges_per_relation": 2.5}, "edges_per_relation=2.5 must be a positive"),
        ({"max_failures": 1.5}, "max_failures=1.5 must be -1"),
        ({"seed": 1.5}, "seed=1.5 must be an integer"),
        ({"hidden_dim": None}, "hidden_dim=None must be a positive integer"),
        ({"hidden_dim": True}, "hidden_dim=True must be a positive integer"),
        ({"hidden_dim": "64"}, "hidden_dim='64' must be a positive integer"),
        ({"num_neighbors": [2.7, 1.9]}, "contains 2.7; each fan-out must be a whole"),
        ({"num_neighbors": "10,5"}, "num_neighbors='10,5' must be a list of integers"),
        ({"num_neighbors": None}, "num_neighbors=None must be a list of integers"),
        ({"inference_num_neighbors": [5, "all"]}, "contains 'all'"),
        ({"use_gpu": "false"}, "use_gpu='false' must be true or false"),
        ({"run_name": "a/b"}, "run_name='a/b' must be a non-empty folder name"),
        ({"run_name": ""}, "run_name='' must be a non-empty folder name"),
        ({"resume_run": True}, "resume_run=true needs run_name"),
    ],
)
def test_invalid_type_or_nan_raises(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        HGNNConfig.from_dict(values)


def test_fanouts_are_not_truncated():
    config = HGNNConfig.from_dict({"num_neighbors": [10.0, -1.0]})
    assert config.num_neighbors == [10, -1]
    assert all(isinstance(n, int) for n in config.num_neighbors)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"worker_replicas": "2"}, "worker_replicas='2' must be a positive integer"),
        ({"worker_replicas": 1.5}, "worker_replicas=1.5 must be a positive integer"),
        ({"gpus_per_worker": -1}, "gpus_per_worker=-1 must be 0 or a positive"),
        ({"active_deadline_seconds": 0}, "active_deadline_seconds=0 must be"),
        ({"timeout_s": NAN}, "timeout_s=nan must be a positive number of seconds"),
        ({"poll_interval_s": 0}, "poll_interval_s=0 must be a positive number"),
        ({"delete_on_timeout": "yes"}, "delete_on_timeout='yes' must be true or false"),
    ],
)
def test_cluster_invalid_value_raises(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ClusterConfig.from_dict(values)


def test_cluster_integral_floats_become_ints():
    cluster = HGNNConfig.from_dict(
        {"cluster": {"worker_replicas": 2.0, "gpus_per_worker": 1.0}}
    ).cluster
    assert cluster.worker_replicas == 2
    assert isinstance(cluster.worker_replicas, int)
    assert isinstance(cluster.gpus_per_worker, int)
    assert isinstance(
        ClusterConfig(ttl_seconds_after_finished=60.0).ttl_seconds_after_finished, int
    )
    assert ClusterConfig(timeout_s=30).timeout_s == 30


def test_resume_run_with_run_name_is_valid():
    config = HGNNConfig.from_dict({"run_name": "weekly", "resume_run": True})
    assert config.resume_run is True
    assert config.non_defaults() == {"run_name": "weekly", "resume_run": True}
