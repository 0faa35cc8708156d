"""Compile the pipeline and check its spec: tasks, images, GPUs, the loop."""

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from gfm import settings
from gfm.components import ENCODED_KEY, decode_parameter
from gfm.pipelines.compile import compile_pipeline
from gfm.pipelines.pipeline import PIPELINE_NAME, build_pipeline
from gfm.pipelines.placement import CACHED_STEPS, RETRIED_STEPS
from gfm.pipelines.run_config import load_run_config

SNAPSHOT = Path(__file__).parent / "snapshots" / "gfm-pipeline.yaml"

# Component function -> the image kind its component names.
STEP_IMAGES = {
    "ingest": "base",
    "split": "base",
    "featurize": "featurize",
    "build-graph": "train",
    "train-hgnn": "train",
    "publish-foundation": "base",
    "train-two-tower": "train",
    "export-bundle": "train",
    "evaluate": "train",
    "deploy": "serve",
}


def load_spec(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the pipeline spec and the platform spec of a compiled package."""
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    platform = documents[1] if len(documents) > 1 else {}
    return documents[0], platform


def _dags(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "root", spec["root"]["dag"]
    for name, component in spec["components"].items():
        if "dag" in component:
            yield name, component["dag"]


def _tasks(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every task of every DAG as ``(dag name, task name, task)``."""
    return [
        (dag_name, task_name, task)
        for dag_name, dag in _dags(spec)
        for task_name, task in dag["tasks"].items()
    ]


def _container_tasks(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``(step, task, executor label)`` of every task that runs a container."""
    for _, task_name, task in _tasks(spec):
        component = spec["components"][task["componentRef"]["name"]]
        label = component.get("executorLabel")
        if label and "container" in spec["deploymentSpec"]["executors"][label]:
            yield _step(task_name), task, label


def _body(spec: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    return spec["components"][task["componentRef"]["name"]]["dag"]["tasks"]


def _step(task_name: str) -> str:
    # The compiler suffixes repeated task and component names with -2, -3.
    return re.sub(r"-\d+$", "", task_name)


def test_every_component_task_uses_its_image(cluster_package):
    spec, _ = load_spec(cluster_package)
    executors = spec["deploymentSpec"]["executors"]
    steps = set()

    for step, _, label in _container_tasks(spec):
        steps.add(step)
        assert executors[label]["container"]["image"] == settings.image(STEP_IMAGES[step])

    assert steps == set(STEP_IMAGES)


def test_gpu_requests_only_on_featurize_and_hgnn(cluster_package):
    spec, platform = load_spec(cluster_package)
    executors = spec["deploymentSpec"]["executors"]
    kubernetes = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    gpu_steps = set()

    for step, _, label in _container_tasks(spec):
        accelerator = executors[label]["container"]["resources"].get("accelerator")
        if not accelerator:
            assert "nodeSelector" not in kubernetes.get(label, {}), step
            continue
        gpu_steps.add(step)
        assert accelerator["resourceType"] == "nvidia.com/gpu"
        assert accelerator["resourceCount"] == "1"
        pod = kubernetes[label]
        assert pod["nodeSelector"]["labels"] == {
            "cloud.google.com/gke-accelerator": "nvidia-l4"
        }
        assert pod["tolerations"] == [
            {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
        ]
        assert pod["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
        assert pod["emptyDirMounts"][0]["medium"] == "Memory"

    assert gpu_steps == {"featurize", "train-hgnn"}


def test_cluster_tasks_request_cpu_and_memory(cluster_package):
    spec, _ = load_spec(cluster_package)
    executors = spec["deploymentSpec"]["executors"]

    for step, _, label in _container_tasks(spec):
        resources = executors[label]["container"]["resources"]
        assert float(resources["resourceCpuRequest"]) >= 1, step
        assert resources["resourceMemoryRequest"].endswith("G"), step
        assert resources["resourceMemoryLimit"].endswith("G"), step


def test_local_package_has_no_placement(local_package):
    spec, platform = load_spec(local_package)

    assert platform == {}
    for executor in spec["deploymentSpec"]["executors"].values():
        assert "resources" not in executor.get("container", {})


def test_retries_and_caching_follow_task_policy(local_package):
    spec, _ = load_spec(local_package)

    for step, task, _ in _container_tasks(spec):
        name = step.replace("-", "_")
        retries = task.get("retryPolicy", {}).get("maxRetryCount")
        assert retries == RETRIED_STEPS.get(name), step
        if name in RETRIED_STEPS:
            assert task["retryPolicy"]["backoffDuration"] == "30s"
        cached = bool(task["cachingOptions"].get("enableCache"))
        assert cached == (name in CACHED_STEPS), step


def test_two_tower_runs_in_a_loop_over_products(local_package):
    spec, _ = load_spec(local_package)
    loops = [task for _, _, task in _tasks(spec) if "parameterIterator" in task]

    assert len(loops) == 2
    for loop in loops:
        assert loop["taskInfo"]["name"] == "products"
        assert loop["iteratorPolicy"]["parallelismLimit"] == 4
        assert loop["inputs"]["parameters"]["pipelinechannel--products"] == {
            "componentInputParameter": "products"
        }
        body = _body(spec, loop)
        assert list(body) == ["train-two-tower"]
        parameters = body["train-two-tower"]["inputs"]["parameters"]
        for field in ("product", "item_types"):
            assert parameters[field]["parameterExpressionSelector"] == (
                f'parseJson(string_value)["{field}"]'
            )


def test_collected_models_feed_export_and_evaluate(local_package):
    spec, _ = load_spec(local_package)
    layers = [
        spec["components"][name]["dag"]["tasks"] for name in spec["components"]
        if name.startswith("comp-gfm-product-layer")
    ]

    assert len(layers) == 2
    for tasks in layers:
        for name in ("export-bundle", "evaluate"):
            models = tasks[name]["inputs"]["artifacts"]["models"]["taskOutputArtifact"]
            assert models["producerTask"] == "for-loop-1"
        assert set(tasks["deploy"]["dependentTasks"]) == {"evaluate", "export-bundle"}
        bundle = tasks["deploy"]["inputs"]["artifacts"]["bundle"]["taskOutputArtifact"]
        assert bundle == {"outputArtifactKey": "bundle", "producerTask": "export-bundle"}


def test_reuse_branch_imports_and_skips_foundation(local_package):
    spec, _ = load_spec(local_package)
    executors = spec["deploymentSpec"]["executors"]
    branches = _body(spec, spec["root"]["dag"]["tasks"]["condition-branches-1"])
    by_name = {task["taskInfo"]["name"]: task for task in branches.values()}

    assert set(by_name) == {"reuse-foundation", "refresh-foundation"}
    reuse = by_name["reuse-foundation"]
    assert reuse["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--reuse_foundation'] == true"
    )
    reuse_body = _body(spec, reuse)
    importers = [t for name, t in reuse_body.items() if name.startswith("importer")]
    assert len(importers) == 2
    assert {_step(name) for name in reuse_body} == {"gfm-product-layer", "importer"}
    for importer in importers:
        label = spec["components"][importer["componentRef"]["name"]]["executorLabel"]
        assert executors[label]["importer"]["reimport"] is True
    refresh_body = _body(spec, by_name["refresh-foundation"])
    assert {"featurize", "build-graph", "train-hgnn", "condition-4"} <= set(refresh_body)
    assert refresh_body["condition-4"]["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--publish_foundation_uri'] != ''"
    )
    assert list(_body(spec, refresh_body["condition-4"])) == ["publish-foundation"]


def test_parameter_defaults_come_from_run_settings(tmp_path):
    run_config = load_run_config("lastfm-2k")

    path = compile_pipeline(tmp_path / "lastfm.yaml", run_config=run_config)

    spec, _ = load_spec(path)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["dataset_name"]["defaultValue"] == "lastfm-2k"
    assert parameters["products"]["defaultValue"] == [
        {"product": "artists", "item_types": ["artist"]},
        {"product": "tags", "item_types": ["tag"]},
    ]
    assert parameters["templates"]["defaultValue"] == run_config.featurize["templates"]
    split_settings = decode_parameter(parameters["split_config"]["defaultValue"])
    assert split_settings == run_config.split
    assert split_settings["window_days"] is None
    assert parameters["reuse_foundation"]["defaultValue"] is False
    assert spec["pipelineInfo"]["name"] == PIPELINE_NAME


def test_settings_parameters_are_encoded(local_package):
    spec, _ = load_spec(local_package)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    hgnn = decode_parameter(parameters["hgnn_config"]["defaultValue"])

    for name in ("split_config", "graph_config", "hgnn_config", "deploy_config"):
        assert list(parameters[name]["defaultValue"]) == [ENCODED_KEY]
    assert hgnn["num_neighbors"] == [10, 5]
    assert all(isinstance(n, int) for n in hgnn["num_neighbors"])


def test_cache_ingest_enables_ingest_cache(tmp_path):
    path = compile_pipeline(tmp_path / "cached.yaml", cache_ingest=True)

    spec, _ = load_spec(path)
    assert spec["root"]["dag"]["tasks"]["ingest"]["cachingOptions"]["enableCache"] is True


def test_build_pipeline_rejects_zero_parallelism():
    with pytest.raises(ValueError, match="max_parallel_products=0"):
        build_pipeline(max_parallel_products=0)


def test_images_follow_registry_settings(tmp_path):
    # Components read GFM_IMAGE_* when their module is imported, so compile
    # in a fresh interpreter.
    out = tmp_path / "registry.yaml"
    env = dict(os.environ, GFM_IMAGE_REGISTRY="registry.example/gfm", GFM_IMAGE_TAG="t9")
    result = subprocess.run(
        [sys.executable, "-m", "gfm.cli", "--log-level", "WARNING", "compile",
         "--placement", "none", "--out", str(out)],
        capture_output=True, text=True, env=env, check=False,
    )

    assert result.returncode == 0, result.stderr
    spec, _ = load_spec(out)
    images = {
        e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()
        if "container" in e
    }
    assert images == {f"registry.example/gfm/gfm-{k}:t9" for k in settings.IMAGE_KINDS}


def _normalized(path: Path) -> list[dict[str, Any]]:
    """The compiled documents without what changes with component code."""
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    spec = documents[0]
    spec.pop("sdkVersion", None)
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container")
        if container:
            # The command embeds each component function's source.
            container.pop("command", None)
            kind = container["image"].rpartition("/gfm-")[2].partition(":")[0]
            container["image"] = f"REGISTRY/gfm-{kind}:TAG"
    return documents


def test_compiled_spec_matches_snapshot(cluster_package):
    if os.environ.get("GFM_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(
            yaml.safe_dump_all(_normalized(cluster_package), sort_keys=True),
            encoding="utf-8",
        )
        # Comparing the snapshot with the output it was just written from
        # proves nothing, so an update run never passes.
        pytest.fail(
            f"updated {SNAPSHOT} because GFM_UPDATE_SNAPSHOTS is set; review its "
            "diff, then rerun without GFM_UPDATE_SNAPSHOTS",
            pytrace=False,
        )

    expected = list(yaml.safe_load_all(SNAPSHOT.read_text(encoding="utf-8")))

    assert _normalized(cluster_package) == expected, (
        "the compiled pipeline changed; if that is intended, rerun with "
        "GFM_UPDATE_SNAPSHOTS=1 and review the diff of the snapshot"
    )
