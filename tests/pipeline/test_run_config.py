"""Tests of gfm.pipelines.run_config and the shipped run settings."""

import importlib

import pytest
import yaml

from gfm.components import decode_parameter
from gfm.pipelines.compile import pipeline_arguments
from gfm.pipelines.run_config import (
    SECTIONS,
    STAGE_SETTINGS,
    Product,
    RunConfig,
    load_run_config,
    shipped_configs,
)


def _document(**changes):
    document = {
        "dataset": {"name": "movielens-1m"},
        "twotower": {"products": {"movies": ["movie"]}},
    }
    document.update(changes)
    return document


def test_shipped_configs_are_movielens_and_lastfm():
    assert sorted(shipped_configs()) == ["lastfm-2k", "movielens-1m"]


@pytest.mark.parametrize("name", ["movielens-1m", "lastfm-2k"])
def test_shipped_config_passes_every_stage_check(name):
    run_config = load_run_config(name)

    run_config.validate()
    raw = yaml.safe_load(shipped_configs()[name].read_text(encoding="utf-8"))
    assert list(raw) == list(SECTIONS)
    assert run_config.dataset["name"] == name


def test_stage_settings_classes_import():
    for section, target in STAGE_SETTINGS.items():
        module_name, _, attribute = target.partition(":")
        settings_class = getattr(importlib.import_module(module_name), attribute)
        assert hasattr(settings_class, "from_dict"), section


def test_lastfm_products_cover_both_item_types():
    run_config = load_run_config("lastfm-2k")

    assert [p.name for p in run_config.products] == ["artists", "tags"]
    assert run_config.item_types == ["artist", "tag"]
    assert run_config.split["protocols"] == {"listen": "random", "tag": "temporal"}


def test_unknown_section_raises_with_known_list():
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['training'\]"):
        RunConfig.from_dict(_document(training={}))


def test_unknown_stage_key_raises_naming_section():
    run_config = RunConfig.from_dict(_document(hgnn={"max_epoch": 3}))

    with pytest.raises(ValueError, match="section 'hgnn'.*max_epoch"):
        run_config.validate()


def test_invalid_stage_value_raises_naming_section():
    run_config = RunConfig.from_dict(_document(split={"protocol": "by-hand"}))

    with pytest.raises(ValueError, match="section 'split'.*by-hand"):
        run_config.validate()


def test_unknown_dataset_key_raises():
    with pytest.raises(ValueError, match=r"unknown dataset setting\(s\) \['path'\]"):
        RunConfig.from_dict(_document(dataset={"name": "files", "path": "/x"}))


def test_products_must_be_a_mapping():
    with pytest.raises(ValueError, match="twotower.products"):
        RunConfig.from_dict(_document(twotower={"products": ["movie"]}))


def test_missing_products_raise():
    with pytest.raises(ValueError, match="twotower.products"):
        RunConfig.from_dict(_document(twotower={"max_epochs": 2}))


@pytest.mark.parametrize(
    "name, item_types, message",
    [
        ("Movies", ["movie"], "invalid"),
        ("movies_2", ["movie"], "invalid"),
        ("movies", [], "non-empty list"),
        ("movies", "movie", "non-empty list"),
        ("movies", ["movie", "movie"], "twice"),
    ],
)
def test_product_rejects_invalid_values(name, item_types, message):
    with pytest.raises(ValueError, match=message):
        Product(name, item_types)


def test_product_parameter_uses_product_key():
    assert Product("artists", ["artist"]).to_parameter() == {
        "product": "artists", "item_types": ["artist"],
    }


def test_round_trip_through_dict():
    run_config = load_run_config("lastfm-2k")

    again = RunConfig.from_dict(run_config.to_dict())

    assert again.to_dict() == run_config.to_dict()
    assert again.products == run_config.products


def test_overrides_replace_nested_keys():
    run_config = load_run_config("movielens-1m")

    changed = run_config.with_overrides({
        "hgnn.max_epochs": 1,
        "featurize.vllm.gpu_memory_utilization": 0.3,
        "twotower.products": {"films": ["movie"]},
    })

    assert changed.hgnn["max_epochs"] == 1
    assert changed.featurize["vllm"] == {"gpu_memory_utilization": 0.3}
    assert [p.name for p in changed.products] == ["films"]
    assert run_config.hgnn["max_epochs"] != 1
    changed.validate()


def test_override_with_unknown_section_raises():
    with pytest.raises(ValueError, match="invalid override key 'epochs'"):
        load_run_config("movielens-1m").with_overrides({"epochs": 1})


def test_load_run_config_missing_name_lists_shipped(tmp_path):
    with pytest.raises(FileNotFoundError, match="lastfm-2k"):
        load_run_config(str(tmp_path / "absent.yaml"))


def test_load_run_config_reads_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_document(graph={"min_count": 3})), encoding="utf-8")

    run_config = load_run_config(path)

    assert run_config.graph == {"min_count": 3}
    assert run_config.source == str(path)


def test_pipeline_arguments_map_every_section():
    run_config = load_run_config("movielens-1m")

    arguments = pipeline_arguments(run_config, publish_foundation_uri="gs://b/f")

    assert arguments["dataset_name"] == "movielens-1m"
    assert arguments["products"] == [{"product": "movies", "item_types": ["movie"]}]
    assert decode_parameter(arguments["hgnn_config"]) == run_config.hgnn
    assert decode_parameter(arguments["split_config"])["window_days"] is None
    assert "products" not in decode_parameter(arguments["twotower_config"])
    assert decode_parameter(arguments["deploy_config"])["serving"] == run_config.serving
    assert arguments["templates"] == run_config.featurize["templates"]
    assert "templates" not in decode_parameter(arguments["featurize_config"])
    assert arguments["reuse_foundation"] is False
    assert arguments["foundation_llm_uri"] == ""
    assert arguments["publish_foundation_uri"] == "gs://b/f"


def test_pipeline_arguments_split_foundation_uri():
    arguments = pipeline_arguments(
        load_run_config("movielens-1m"), reuse_foundation=True,
        foundation_uri="gs://bucket/foundation",
    )

    assert arguments["reuse_foundation"] is True
    assert arguments["foundation_llm_uri"] == "gs://bucket/foundation/llm"
    assert arguments["foundation_hgnn_uri"] == "gs://bucket/foundation/hgnn"


def test_reuse_without_foundation_uri_raises():
    with pytest.raises(ValueError, match="needs foundation_uri"):
        pipeline_arguments(load_run_config("movielens-1m"), reuse_foundation=True)
