"""Tests of the RayJob object, its CRD schema, and the submit-and-wait logic.

No Kubernetes API server can run here, so ``FakeCustomObjectsApi`` replaces
``kubernetes.client.CustomObjectsApi``: it stores created objects and
replays a scripted list of statuses. It is the only mock in the HGNN tests.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from gfm import settings
from gfm.cli import build_parser
from gfm.hgnn import ClusterConfig, HGNNConfig, RayJobFailedError, kuberay
from gfm.hgnn.cli import load_settings
from gfm.hgnn.remote import check_cluster_inputs, train_on_cluster

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "manifests" / "base" / "rayjob-hgnn.yaml"


class FakeCustomObjectsApi:
    """Records ``create`` and ``delete`` calls and replays ``statuses`` on ``get``.

    An entry of ``statuses`` is a status dict, or an ``ApiException`` to raise.
    The last entry repeats once the list is used up.
    """

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.created = []
        self.deleted = []
        self.gets = 0

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == ("ray.io", "v1", "rayjobs")
        assert namespace == body["metadata"]["namespace"]
        self.created.append(body)
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        assert (group, version, plural) == ("ray.io", "v1", "rayjobs")
        entry = self.statuses[min(self.gets, len(self.statuses) - 1)]
        self.gets += 1
        if isinstance(entry, Exception):
            raise entry
        return {"metadata": {"name": name, "namespace": namespace}, "status": entry}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.deleted.append((namespace, name))


class FakeClock:
    """A monotonic clock that ``sleep`` advances, so waits take no time."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def rayjob_validator():
    crds = settings.crds_dir()
    if crds is None:
        pytest.fail(
            "GFM_CRDS_DIR is not set: point it at the folder with ray.io_rayjobs.yaml"
        )
    # The CRD is large; libyaml's loader reads it several times faster.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    text = (crds / "ray.io_rayjobs.yaml").read_text(encoding="utf-8")
    crd = yaml.load(text, Loader=loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = version["schema"]["openAPIV3Schema"]
    return jsonschema.validators.validator_for(schema)(schema)


def build(cluster=None, use_gpu=True, **kwargs):
    entrypoint = kuberay.train_entrypoint(
        "gs://b/graph", "gs://b/out", HGNNConfig(use_gpu=use_gpu).non_defaults(), None
    )
    return kuberay.build_rayjob(
        "gfm-hgnn-test",
        entrypoint,
        cluster or ClusterConfig(),
        image="registry.example/gfm-train:1",
        use_gpu=use_gpu,
        **kwargs,
    )


def worker_pod(body):
    (group,) = body["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    return group, group["template"]["spec"]


def test_rayjob_validates_against_crd(rayjob_validator):
    body = build(
        ClusterConfig(node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"})
    )
    rayjob_validator.validate(body)
    cpu_only = build(
        use_gpu=False, runtime_env={"env_vars": {"GFM_LOG_LEVEL": "DEBUG"}}
    )
    rayjob_validator.validate(cpu_only)


def test_misspelt_field_fails_crd_schema(rayjob_validator):
    body = build()
    body["spec"]["ttlSecondsAfterFinished"] = "an hour"
    with pytest.raises(jsonschema.ValidationError):
        rayjob_validator.validate(body)


def test_rayjob_requests_gpus_with_tolerations():
    body = build(ClusterConfig(worker_replicas=3, gpus_per_worker=2))
    group, pod = worker_pod(body)
    (container,) = pod["containers"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 3
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert {
        "key": "nvidia.com/gpu",
        "operator": "Exists",
        "effect": "NoSchedule",
    } in pod["tolerations"]
    assert pod["volumes"][0]["emptyDir"]["medium"] == "Memory"


def test_rayjob_lifecycle_settings():
    body = build(
        ClusterConfig(ttl_seconds_after_finished=120, active_deadline_seconds=None)
    )
    spec = body["spec"]
    assert body["apiVersion"] == "ray.io/v1"
    assert body["kind"] == "RayJob"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == 120
    assert "activeDeadlineSeconds" not in spec
    assert "suspend" not in spec
    assert spec["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_cpu_rayjob_has_no_gpu_request():
    _, pod = worker_pod(build(use_gpu=False))
    (container,) = pod["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "tolerations" not in pod


def test_entrypoint_parses_into_train_command():
    config = HGNNConfig(use_gpu=True, max_epochs=7, num_neighbors=[8, 4])
    command = kuberay.train_entrypoint(
        "gs://b/graph dir", "gs://b/out", config.non_defaults(), "gs://b/old run"
    )
    words = shlex.split(command)
    assert words[:3] == ["gfm", "hgnn", "train"]
    args = build_parser().parse_args(words[1:])
    assert args.graph == "gs://b/graph dir"
    assert args.resume_from == "gs://b/old run"
    parsed = HGNNConfig.from_dict(load_settings(None, args.config_json))
    assert parsed.launcher == "local"
    assert parsed.ray_address == "auto"
    assert parsed.max_epochs == 7
    assert parsed.num_neighbors == [8, 4]
    assert parsed.use_gpu is True


def test_manifest_template_is_valid_and_suspended(rayjob_validator):
    body = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    rayjob_validator.validate(body)
    spec = body["spec"]
    assert spec["suspend"] is True
    assert spec["shutdownAfterJobFinishes"] is True
    _, pod = worker_pod(body)
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert pod["serviceAccountName"] == "gfm-workload"
    args = build_parser().parse_args(shlex.split(spec["entrypoint"])[1:])
    assert HGNNConfig.from_dict(load_settings(None, args.config_json)).use_gpu is True


def test_wait_returns_on_success_and_logs_progress(caplog):
    api = FakeCustomObjectsApi(
        [
            {},
            {"jobDeploymentStatus": "Initializing"},
            {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
            {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
        ]
    )
    clock = FakeClock()
    body = build()
    name = kuberay.submit_rayjob(body, api)
    with caplog.at_level("INFO", logger="gfm.hgnn.kuberay"):
        status = kuberay.wait_for_rayjob(
            name,
            "gfm",
            api,
            timeout_s=600,
            poll_interval_s=10,
            clock=clock,
            sleep=clock.sleep,
        )
    assert status["jobStatus"] == "SUCCEEDED"
    assert api.created == [body]
    assert api.gets == 4
    assert clock.sleeps == [10, 10, 10]
    assert "job RUNNING" in caplog.text


def test_wait_raises_on_failed_job():
    api = FakeCustomObjectsApi(
        [
            {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
            {
                "jobDeploymentStatus": "Failed",
                "jobStatus": "FAILED",
                "message": "OOMKilled",
            },
        ]
    )
    clock = FakeClock()
    with pytest.raises(RayJobFailedError, match="OOMKilled"):
        kuberay.wait_for_rayjob(
            "job",
            "gfm",
            api,
            timeout_s=600,
            poll_interval_s=5,
            clock=clock,
            sleep=clock.sleep,
        )
    assert api.deleted == []


def test_wait_times_out_and_deletes():
    api = FakeCustomObjectsApi(
        [{"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}]
    )
    clock = FakeClock()
    with pytest.raises(TimeoutError, match="within 60 s"):
        kuberay.wait_for_rayjob(
            "job",
            "gfm",
            api,
            timeout_s=60,
            poll_interval_s=15,
            clock=clock,
            sleep=clock.sleep,
        )
    assert api.deleted == [("gfm", "job")]
    assert clock.now == 60


def test_wait_timeout_can_keep_the_job():
    api = FakeCustomObjectsApi([{"jobDeploymentStatus": "Running"}])
    clock = FakeClock()
    with pytest.raises(TimeoutError, match="kubectl -n gfm delete rayjob job"):
        kuberay.wait_for_rayjob(
            "job",
            "gfm",
            api,
            timeout_s=30,
            poll_interval_s=15,
            delete_on_timeout=False,
            clock=clock,
            sleep=clock.sleep,
        )
    assert api.deleted == []


def test_wait_retries_transient_api_errors(caplog):
    api = FakeCustomObjectsApi(
        [
            ApiException(status=503, reason="Service Unavailable"),
            ApiException(status=429, reason="Too Many Requests"),
            {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
        ]
    )
    clock = FakeClock()
    with caplog.at_level("WARNING", logger="gfm.hgnn.kuberay"):
        kuberay.wait_for_rayjob(
            "job",
            "gfm",
            api,
            timeout_s=600,
            poll_interval_s=1,
            clock=clock,
            sleep=clock.sleep,
        )
    assert api.gets == 3
    assert "HTTP 503 (1 of 5 retries)" in caplog.text


def test_wait_raises_on_forbidden():
    api = FakeCustomObjectsApi([ApiException(status=403, reason="Forbidden")])
    clock = FakeClock()
    with pytest.raises(ApiException):
        kuberay.wait_for_rayjob(
            "job",
            "gfm",
            api,
            timeout_s=600,
            poll_interval_s=1,
            clock=clock,
            sleep=clock.sleep,
        )


def test_train_on_cluster_submits_and_waits():
    api = FakeCustomObjectsApi(
        [{"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}]
    )
    config = HGNNConfig(
        launcher="rayjob",
        use_gpu=True,
        max_epochs=3,
        cluster={
            "namespace": "ml",
            "poll_interval_s": 1,
            "image": "registry.example/t:2",
        },
    )
    name = train_on_cluster("gs://b/graph", "gs://b/out", config, api=api)
    (body,) = api.created
    assert body["metadata"]["name"] == name
    assert body["metadata"]["namespace"] == "ml"
    assert (
        body["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"][
            "containers"
        ][0]["image"]
        == "registry.example/t:2"
    )
    assert '"max_epochs": 3' in body["spec"]["entrypoint"]


@pytest.mark.parametrize(
    ("graph", "changes", "message"),
    [
        ("/tmp/graph", {"launcher": "rayjob"}, "cannot read the local path graph_uri"),
        ("gs://b/g", {"launcher": "job-submission"}, "needs cluster.address"),
        (
            "gs://b/g",
            {"launcher": "rayjob", "use_gpu": True, "num_workers": 5},
            "lower num_workers",
        ),
    ],
)
def test_cluster_inputs_rejected(graph, changes, message):
    with pytest.raises(ValueError, match=message):
        check_cluster_inputs(graph, "gs://b/out", HGNNConfig(**changes))


def test_rayjob_command_prints_valid_yaml(rayjob_validator, capsys):
    parser = build_parser()
    args = parser.parse_args(
        [
            "hgnn",
            "rayjob",
            "--graph",
            "gs://b/g",
            "--out",
            "gs://b/o",
            "--name",
            "run-1",
            "--config-json",
            json.dumps({"cluster": {"namespace": "team"}}),
        ]
    )
    assert isinstance(args, argparse.Namespace)
    assert args.func(args) == 0
    body = yaml.safe_load(capsys.readouterr().out)
    rayjob_validator.validate(body)
    assert body["metadata"] == {
        "name": "run-1",
        "namespace": "team",
        "labels": {
            "app.kubernetes.io/name": "gfm",
            "app.kubernetes.io/component": "hgnn",
        },
    }
