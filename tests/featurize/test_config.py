"""Tests of the featurize settings."""

from __future__ import annotations

import pytest

from gfm.featurize import DEFAULT_TEMPLATES, FeaturizeConfig, RayOptions, VLLMOptions


def test_from_dict_empty_gives_defaults():
    config = FeaturizeConfig.from_dict({})

    assert config == FeaturizeConfig()
    assert config.engine == "auto"
    assert config.templates == DEFAULT_TEMPLATES
    assert config.vllm == VLLMOptions()
    assert config.ray == RayOptions()


def test_from_dict_merges_templates_over_defaults():
    config = FeaturizeConfig.from_dict({"templates": {"movie": "{title}", "book": "{title}"}})

    assert config.templates["movie"] == "{title}"
    assert config.templates["book"] == "{title}"
    assert config.templates["artist"] == DEFAULT_TEMPLATES["artist"]


def test_from_dict_builds_nested_options():
    config = FeaturizeConfig.from_dict({
        "vllm": {"gpu_memory_utilization": 0.5},
        "ray": {"enabled": True, "num_actors": 3},
    })

    assert config.vllm.gpu_memory_utilization == 0.5
    assert config.ray.enabled is True
    assert config.ray.num_actors == 3


def test_to_dict_round_trips():
    config = FeaturizeConfig(engine="sentence-transformers", batch_size=8,
                             cache_uri="gs://b/cache", ray=RayOptions(num_actors=4))

    assert FeaturizeConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(("values", "message"), [
    ({"batchsize": 8}, r"unknown featurize setting\(s\) \['batchsize'\]"),
    ({"vllm": {"memory": 0.1}}, r"unknown featurize.vllm setting\(s\) \['memory'\]"),
    ({"ray": {"actors": 2}}, r"unknown featurize.ray setting\(s\) \['actors'\]"),
    ({"ray": [1, 2]}, "must be a mapping"),
    ({"templates": ["{title}"]}, "must map item type to template"),
    ({"engine": "onnx"}, "unknown engine 'onnx'"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"max_length": 1}, "max_length=1"),
    ({"empty_text": "skip"}, "unknown empty_text policy 'skip'"),
    ({"template_version": ""}, "template_version"),
    ({"templates": {"movie": "{title"}}, "template of item type 'movie'"),
    ({"vllm": {"gpu_memory_utilization": 0}}, "outside"),
    ({"vllm": {"start_timeout_s": -1}}, "must be positive"),
    ({"ray": {"num_actors": 0}}, "at least 1"),
    ({"ray": {"num_cpus_per_actor": 0}}, "must be positive"),
    ({"ray": {"num_gpus_per_actor": -1}}, "must not be negative"),
])
def test_from_dict_rejects_invalid_values(values, message):
    with pytest.raises(ValueError, match=message):
        FeaturizeConfig.from_dict(values)


@pytest.mark.parametrize(("value", "enabled"), [(True, True), (False, False), (None, False)])
def test_from_dict_ray_shorthand(value, enabled):
    config = FeaturizeConfig.from_dict({"ray": value})

    assert config.ray.enabled is enabled
    assert config.ray.num_actors == RayOptions().num_actors


def test_from_dict_ray_of_wrong_type_raises():
    with pytest.raises(ValueError, match="featurize.ray must be a mapping of Ray settings or "
                                         r"true/false, got \['x'\]"):
        FeaturizeConfig.from_dict({"ray": ["x"]})
