"""Tests of gfm.pipelines.placement: task policy, presets, YAML files."""

import re

import pytest
import yaml
from kfp import dsl, local

from gfm.cli import main
from gfm.pipelines.placement import (
    RETRIED_STEPS,
    STEPS,
    Placement,
    StepPlacement,
    Toleration,
    apply_task_policy,
    cpu_cluster_placement,
    gke_placement,
    hgnn_trains_in_step,
    load_placement,
)


@dsl.component(base_image="python:3.11")
def write_marker(out: dsl.Output[dsl.Artifact]):
    import os

    os.makedirs(out.path, exist_ok=True)
    with open(os.path.join(out.path, "marker.txt"), "w", encoding="utf-8") as handle:
        handle.write("ran")


def test_gke_placement_puts_gpus_on_featurize_and_hgnn():
    placement = gke_placement("nvidia-tesla-t4")

    for step in ("featurize", "train_hgnn"):
        spec = placement.steps[step]
        assert spec.accelerator_type == "nvidia.com/gpu"
        assert spec.accelerator_count == 1
        assert spec.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
        assert [t.key for t in spec.tolerations] == ["nvidia.com/gpu"]
        assert spec.shm_size == "8Gi"
    gpu_steps = {s for s, spec in placement.steps.items() if spec.accelerator_type}
    assert gpu_steps == {"featurize", "train_hgnn"}
    assert placement.gcs_key_secret is None


def test_cpu_cluster_placement_has_no_gpus():
    placement = cpu_cluster_placement()

    assert all(spec.accelerator_type is None for spec in placement.steps.values())
    assert placement.steps["featurize"].shm_size == "2Gi"
    assert placement.gcs_key_secret == "gfm-gcs-key"
    assert placement.image_pull_policy == "IfNotPresent"


def test_presets_cover_every_step():
    for placement in (gke_placement(), cpu_cluster_placement()):
        assert set(placement.steps) == set(STEPS)


def test_gke_placement_without_hgnn_gpu():
    placement = gke_placement(hgnn_gpu=False)
    hgnn = placement.steps["train_hgnn"]

    assert hgnn.accelerator_type is None
    assert hgnn.node_selector == {}
    assert hgnn.tolerations == []
    assert hgnn.shm_size is None
    assert hgnn.cpu_request == "1"
    assert placement.steps["featurize"].accelerator_type == "nvidia.com/gpu"


@pytest.mark.parametrize(
    ("hgnn", "expected"),
    [
        ({}, True),
        ({"launcher": "local"}, True),
        ({"launcher": "local", "ray_address": "ray://head:10001"}, False),
        ({"launcher": "rayjob"}, False),
        ({"launcher": "job-submission", "cluster": {"address": "http://head:8265"}}, False),
    ],
)
def test_hgnn_trains_in_step_by_launcher(hgnn, expected):
    assert hgnn_trains_in_step(hgnn) is expected


def _compile_gke(tmp_path, *overrides: str) -> tuple[dict, dict]:
    out = tmp_path / "gke.yaml"
    sets = [word for override in overrides for word in ("--set", override)]
    code = main(["--log-level", "WARNING", "compile", "--config", "movielens-1m",
                 "--placement", "gke", *sets, "--out", str(out)])
    assert code == 0
    spec, platform = list(yaml.safe_load_all(out.read_text(encoding="utf-8")))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_compile_gke_gives_local_hgnn_a_gpu(tmp_path):
    spec, kubernetes = _compile_gke(tmp_path)
    resources = spec["deploymentSpec"]["executors"]["exec-train-hgnn"]["container"][
        "resources"
    ]

    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1"
    assert resources["resourceCpuRequest"] == "8"
    assert kubernetes["exec-train-hgnn"]["tolerations"][0]["key"] == "nvidia.com/gpu"


@pytest.mark.parametrize(
    "overrides",
    [
        ("hgnn.launcher=rayjob",),
        ("hgnn.launcher=job-submission", "hgnn.cluster.address=http://127.0.0.1:8265"),
    ],
)
def test_compile_gke_remote_hgnn_has_no_gpu(tmp_path, overrides):
    spec, kubernetes = _compile_gke(tmp_path, *overrides)
    executors = spec["deploymentSpec"]["executors"]
    resources = executors["exec-train-hgnn"]["container"]["resources"]

    assert "accelerator" not in resources
    assert resources["resourceCpuRequest"] == "1"
    assert "nodeSelector" not in kubernetes.get("exec-train-hgnn", {})
    assert "tolerations" not in kubernetes.get("exec-train-hgnn", {})
    featurize = executors["exec-featurize"]["container"]["resources"]["accelerator"]
    assert featurize["resourceType"] == "nvidia.com/gpu"


def test_task_policy_steps_match_compiled_tasks(local_package):
    spec = yaml.safe_load(local_package.read_text(encoding="utf-8"))
    executors = spec["deploymentSpec"]["executors"]
    tasks = {}
    for component in [spec["root"], *spec["components"].values()]:
        for name, task in component.get("dag", {}).get("tasks", {}).items():
            label = spec["components"][task["componentRef"]["name"]].get("executorLabel")
            if label and "container" in executors[label]:
                # The compiler suffixes repeated task names with -2, -3.
                tasks[re.sub(r"-\d+$", "", name).replace("-", "_")] = task

    assert set(tasks) == set(STEPS)
    for step in ("ingest", "publish_foundation", "deploy"):
        assert not tasks[step]["cachingOptions"].get("enableCache"), step


def test_placement_from_dict_rejects_unknown_key():
    with pytest.raises(ValueError, match=r"unknown placement setting\(s\) \['gpu'\]"):
        Placement.from_dict({"gpu": 1})


def test_placement_rejects_unknown_step():
    with pytest.raises(ValueError, match="unknown pipeline step 'train'"):
        Placement.from_dict({"steps": {"train": {"cpu_request": "1"}}})


def test_step_placement_rejects_unknown_key():
    with pytest.raises(ValueError, match=r"\['gpus'\]"):
        StepPlacement.from_dict({"gpus": 2})


def test_step_placement_rejects_zero_accelerators():
    with pytest.raises(ValueError, match="accelerator_count=0"):
        StepPlacement(accelerator_type="nvidia.com/gpu", accelerator_count=0)


def test_toleration_rejects_invalid_operator():
    with pytest.raises(ValueError, match="operator 'In'"):
        Toleration(key="nvidia.com/gpu", operator="In")


def test_load_placement_reads_yaml_file(tmp_path):
    path = tmp_path / "placement.yaml"
    path.write_text(yaml.safe_dump({
        "gcs_key_secret": "my-key",
        "steps": {
            "featurize": {
                "accelerator_type": "nvidia.com/gpu",
                "accelerator_count": 2,
                "tolerations": [{"key": "gpu", "operator": "Equal", "value": "a100"}],
            },
        },
    }), encoding="utf-8")

    placement = load_placement(str(path))

    assert placement.gcs_key_secret == "my-key"
    assert placement.steps["featurize"].accelerator_count == 2
    assert placement.steps["featurize"].tolerations[0] == Toleration(
        key="gpu", operator="Equal", value="a100", effect="NoSchedule"
    )
    assert load_placement("gke").to_dict() == gke_placement().to_dict()


def test_load_placement_missing_file_names_presets():
    with pytest.raises(FileNotFoundError, match="presets"):
        load_placement("no-such-placement.yaml")


def test_apply_writes_resources_and_kubernetes_settings(tmp_path):
    placement = Placement(
        steps={"train_hgnn": gke_placement().steps["train_hgnn"]},
        gcs_key_secret="gfm-gcs-key",
        image_pull_policy="IfNotPresent",
    )

    @dsl.pipeline(name="placement-check")
    def pipeline():
        placement.apply(apply_task_policy(write_marker(), "train_hgnn"), "train_hgnn")

    from kfp import compiler

    path = tmp_path / "placement.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    spec, platform = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    container = spec["deploymentSpec"]["executors"]["exec-write-marker"]["container"]
    task = spec["root"]["dag"]["tasks"]["write-marker"]
    kubernetes = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
        "exec-write-marker"
    ]

    assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert container["resources"]["accelerator"]["resourceCount"] == "1"
    assert container["resources"]["resourceCpuRequest"] == "8"
    assert container["resources"]["resourceMemoryLimit"] == "32G"
    assert {"name": "GOOGLE_APPLICATION_CREDENTIALS",
            "value": "/var/secrets/google/gcloud-application-credentials.json"} in container["env"]
    assert task["retryPolicy"]["maxRetryCount"] == RETRIED_STEPS["train_hgnn"]
    assert task["retryPolicy"]["backoffDuration"] == "30s"
    assert task["cachingOptions"]["enableCache"] is True
    assert kubernetes["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4"
    }
    assert kubernetes["tolerations"] == [
        {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
    ]
    assert kubernetes["emptyDirMounts"] == [
        {"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "8Gi",
         "volumeName": "dshm"}
    ]
    assert kubernetes["secretAsVolume"][0]["secretName"] == "gfm-gcs-key"
    assert kubernetes["imagePullPolicy"] == "IfNotPresent"


def test_task_policy_disables_cache_on_ingest(tmp_path):
    @dsl.pipeline(name="policy-check")
    def pipeline():
        apply_task_policy(write_marker(), "ingest")

    from kfp import compiler

    path = tmp_path / "policy.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    task = spec["root"]["dag"]["tasks"]["write-marker"]

    assert task["cachingOptions"] == {}
    assert task["retryPolicy"]["maxRetryCount"] == RETRIED_STEPS["ingest"]


def test_local_runner_ignores_cluster_placement(tmp_path):
    placement = gke_placement()

    @dsl.pipeline(name="placement-local")
    def pipeline():
        placement.apply(write_marker(), "featurize")

    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path)
    )
    with pytest.warns(UserWarning, match="no effect in the current local runner"):
        pipeline()

    markers = list(tmp_path.glob("placement-local-*/write-marker/out/marker.txt"))
    assert len(markers) == 1
    assert markers[0].read_text(encoding="utf-8") == "ran"
