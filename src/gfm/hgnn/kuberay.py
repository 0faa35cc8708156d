"""Run HGNN training on a Kubernetes Ray cluster.

Two launchers, chosen by ``HGNNConfig.launcher``:

* ``rayjob``: :func:`build_rayjob` makes a KubeRay ``RayJob`` (ray.io/v1)
  with a CPU head and a GPU worker group, :func:`submit_rayjob` creates it
  through the Kubernetes API (``CustomObjectsApi``), and
  :func:`wait_for_rayjob` polls its status until the job ends or a timeout.
  KubeRay deletes the cluster when the job finishes
  (``shutdownAfterJobFinishes``) and the ``RayJob`` after
  ``ttlSecondsAfterFinished``.
* ``job-submission``: :func:`submit_ray_job` sends the same entrypoint to a
  running RayCluster's dashboard with Ray's ``JobSubmissionClient``, and
  :func:`wait_for_ray_job` polls it.

In both cases the entrypoint is ``gfm hgnn train`` with the ``local``
launcher attached to the cluster (``ray_address="auto"``), so the inputs and
outputs must be on storage both sides reach (``gs://``).
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable, Mapping
from typing import Any

from gfm.hgnn.config import ClusterConfig

logger = logging.getLogger(__name__)

# Seconds to wait for a RayCluster's job agent to accept submissions. A
# local 2-CPU cluster whose cores other processes kept busy took over 60 s
# to register its agent, and a head pod that just started can be slower.
SUBMIT_AGENT_WAIT_S = 180.0

RAYJOB_GROUP = "ray.io"
RAYJOB_VERSION = "v1"
RAYJOB_PLURAL = "rayjobs"

# KubeRay's RayJob status: jobStatus is the Ray job's state and
# jobDeploymentStatus the operator's view of the whole RayJob.
JOB_SUCCEEDED = "SUCCEEDED"
JOB_TERMINAL_FAILURES = ("FAILED", "STOPPED")
DEPLOYMENT_FAILED = "Failed"

# Transient Kubernetes API statuses worth retrying while polling.
RETRYABLE_HTTP_STATUSES = (429, 500, 502, 503, 504)


class RayJobFailedError(RuntimeError):
    """The Ray job of a ``RayJob`` or a job submission ended without success."""


def train_entrypoint(
    graph_uri: str, out_uri: str, config: Mapping[str, Any], resume_from: str | None
) -> str:
    """Return the shell command that trains inside the Ray cluster.

    Args:
        graph_uri: the graph folder.
        out_uri: the output folder.
        config: HGNN settings as a mapping; ``launcher`` and ``ray_address``
            are set to run on the cluster the command runs in.
        resume_from: checkpoint to warm-start from, or ``None``.
    """
    settings = dict(config, launcher="local", ray_address="auto")
    words = [
        "gfm",
        "hgnn",
        "train",
        "--graph",
        graph_uri,
        "--out",
        out_uri,
        "--config-json",
        json.dumps(settings, sort_keys=True),
    ]
    if resume_from:
        words += ["--resume-from", resume_from]
    return shlex.join(words)


def _env_list(env: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": str(v)} for k, v in sorted(env.items())]


def _container(
    name: str,
    image: str,
    cpu: str,
    memory: str,
    gpus: int,
    env: Mapping[str, str],
    ports: list[dict] | None = None,
) -> dict:
    resources: dict[str, dict[str, Any]] = {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu, "memory": memory},
    }
    if gpus:
        resources["requests"]["nvidia.com/gpu"] = gpus
        resources["limits"]["nvidia.com/gpu"] = gpus
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "resources": resources,
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if env:
        container["env"] = _env_list(env)
    if ports:
        container["ports"] = ports
    return container


def _pod_spec(container: dict, cluster: ClusterConfig, gpu: bool) -> dict:
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [
            {
                "name": "dshm",
                "emptyDir": {"medium": "Memory", "sizeLimit": cluster.shm_size},
            }
        ],
    }
    if cluster.service_account:
        spec["serviceAccountName"] = cluster.service_account
    if gpu:
        if cluster.tolerations:
            spec["tolerations"] = [dict(t) for t in cluster.tolerations]
        if cluster.node_selector:
            spec["nodeSelector"] = dict(cluster.node_selector)
    return spec


def build_rayjob(
    name: str,
    entrypoint: str,
    cluster: ClusterConfig,
    *,
    image: str,
    use_gpu: bool = True,
    runtime_env: Mapping[str, Any] | None = None,
    suspend: bool = False,
) -> dict[str, Any]:
    """Build a KubeRay ``RayJob`` object (``ray.io/v1``) as a plain dict.

    Args:
        name: ``metadata.name`` (a DNS-1123 label).
        entrypoint: the command the job runs on the head.
        cluster: sizes, image and lifecycle settings.
        image: container image of head and workers.
        use_gpu: request ``gpus_per_worker`` GPUs per worker pod and add the
            GPU tolerations and node selector.
        runtime_env: Ray runtime environment of the job, written to
            ``runtimeEnvYAML``.
        suspend: create it suspended; KubeRay starts no cluster until
            ``spec.suspend`` is set to false.

    Returns:
        The object, ready for ``CustomObjectsApi.create_namespaced_custom_object``.
    """
    gpus = cluster.gpus_per_worker if use_gpu else 0
    head = _container(
        "ray-head",
        image,
        cluster.head_cpu,
        cluster.head_memory,
        0,
        cluster.env,
        ports=[
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
        ],
    )
    worker = _container(
        "ray-worker",
        image,
        cluster.worker_cpu,
        cluster.worker_memory,
        gpus,
        cluster.env,
    )
    spec: dict[str, Any] = {
        "entrypoint": entrypoint,
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": cluster.shutdown_after_job_finishes,
        "ttlSecondsAfterFinished": cluster.ttl_seconds_after_finished,
        "rayClusterSpec": {
            "rayVersion": cluster.ray_version,
            "headGroupSpec": {
                # The head runs the driver and Ray Train's controller; no
                # training worker lands there.
                "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                "template": {"spec": _pod_spec(head, cluster, gpu=False)},
            },
            "workerGroupSpecs": [
                {
                    "groupName": "gpu-workers" if gpus else "cpu-workers",
                    "replicas": cluster.worker_replicas,
                    "minReplicas": cluster.worker_replicas,
                    "maxReplicas": cluster.worker_replicas,
                    "rayStartParams": {},
                    "template": {"spec": _pod_spec(worker, cluster, gpu=bool(gpus))},
                }
            ],
        },
    }
    if suspend:
        spec["suspend"] = True
    if cluster.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = cluster.active_deadline_seconds
    if runtime_env:
        import yaml

        spec["runtimeEnvYAML"] = yaml.safe_dump(dict(runtime_env), sort_keys=True)
    return {
        "apiVersion": f"{RAYJOB_GROUP}/{RAYJOB_VERSION}",
        "kind": "RayJob",
        "metadata": {
            "name": name,
            "namespace": cluster.namespace,
            "labels": {
                "app.kubernetes.io/name": "gfm",
                "app.kubernetes.io/component": "hgnn",
            },
        },
        "spec": spec,
    }


def rayjob_name(prefix: str, now: float | None = None) -> str:
    """Return a unique ``RayJob`` name: ``prefix`` and a UTC timestamp."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{prefix}-{stamp}"[:63].rstrip("-")


def custom_objects_api():
    """Return a ``kubernetes.client.CustomObjectsApi`` for this environment.

    Inside a pod it uses the in-cluster service account, elsewhere the
    current kubeconfig context.
    """
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def submit_rayjob(body: Mapping[str, Any], api) -> str:
    """Create the ``RayJob`` and return its name.

    Args:
        body: an object from :func:`build_rayjob`.
        api: a ``CustomObjectsApi`` (or an object with the same methods).
    """
    namespace = body["metadata"]["namespace"]
    name = body["metadata"]["name"]
    api.create_namespaced_custom_object(
        group=RAYJOB_GROUP,
        version=RAYJOB_VERSION,
        namespace=namespace,
        plural=RAYJOB_PLURAL,
        body=dict(body),
    )
    logger.info("created RayJob %s/%s", namespace, name)
    return name


def _rayjob_outcome(status: Mapping[str, Any]) -> str | None:
    job_status = status.get("jobStatus")
    if job_status == JOB_SUCCEEDED:
        return "succeeded"
    if (
        job_status in JOB_TERMINAL_FAILURES
        or status.get("jobDeploymentStatus") == DEPLOYMENT_FAILED
    ):
        return "failed"
    return None


def wait_for_rayjob(
    name: str,
    namespace: str,
    api,
    *,
    timeout_s: float,
    poll_interval_s: float,
    max_api_errors: int = 5,
    delete_on_timeout: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll a ``RayJob`` until its Ray job ends; return its final status.

    Args:
        name: the ``RayJob`` name.
        namespace: its namespace.
        api: a ``CustomObjectsApi``.
        timeout_s: seconds to wait in all.
        poll_interval_s: seconds between polls.
        max_api_errors: consecutive transient API errors (429, 5xx) retried
            before giving up.
        delete_on_timeout: delete the ``RayJob`` before raising
            ``TimeoutError``, so its RayCluster releases the GPUs.
        clock: monotonic time source, in seconds.
        sleep: waits the given seconds.

    Raises:
        RayJobFailedError: if the job failed or was stopped, or the operator
            marked the ``RayJob`` failed.
        TimeoutError: if it did not end within ``timeout_s``.
    """
    from kubernetes.client.exceptions import ApiException

    deadline = clock() + timeout_s
    status: dict[str, Any] = {}
    errors = 0
    last_seen = None
    while True:
        try:
            obj = api.get_namespaced_custom_object(
                group=RAYJOB_GROUP,
                version=RAYJOB_VERSION,
                namespace=namespace,
                plural=RAYJOB_PLURAL,
                name=name,
            )
            errors = 0
            status = dict(obj.get("status") or {})
        except ApiException as error:
            if error.status not in RETRYABLE_HTTP_STATUSES or errors >= max_api_errors:
                raise
            errors += 1
            logger.warning(
                "reading RayJob %s/%s failed with HTTP %s (%d of %d retries): %s",
                namespace,
                name,
                error.status,
                errors,
                max_api_errors,
                error.reason,
            )
        seen = (status.get("jobDeploymentStatus"), status.get("jobStatus"))
        if seen != last_seen:
            logger.info("RayJob %s/%s: deployment %s, job %s", namespace, name, *seen)
            last_seen = seen
        outcome = _rayjob_outcome(status)
        if outcome == "succeeded":
            return status
        if outcome == "failed":
            raise RayJobFailedError(
                f"RayJob {namespace}/{name} failed: deployment "
                f"{status.get('jobDeploymentStatus')}, job {status.get('jobStatus')}, "
                f"reason {status.get('reason')!r}, message {status.get('message')!r}; "
                f"see kubectl -n {namespace} logs -l job-name={name}"
            )
        if clock() >= deadline:
            message = (
                f"RayJob {namespace}/{name} did not finish within {timeout_s:.0f} s "
                f"(deployment {seen[0]}, job {seen[1]})"
            )
            if not delete_on_timeout:
                raise TimeoutError(
                    f"{message}; it keeps running until activeDeadlineSeconds, or "
                    f"delete it with kubectl -n {namespace} delete rayjob {name}"
                )
            api.delete_namespaced_custom_object(
                group=RAYJOB_GROUP,
                version=RAYJOB_VERSION,
                namespace=namespace,
                plural=RAYJOB_PLURAL,
                name=name,
            )
            logger.error("%s; deleted it", message)
            raise TimeoutError(f"{message}; deleted it and its RayCluster")
        sleep(poll_interval_s)


def submit_ray_job(
    address: str,
    entrypoint: str,
    *,
    runtime_env: Mapping[str, Any] | None = None,
    submission_id: str | None = None,
    client=None,
) -> tuple[Any, str]:
    """Submit ``entrypoint`` to a running RayCluster; return the client and job id.

    Args:
        address: the cluster's dashboard address (``http://HOST:8265``).
        entrypoint: the command to run on the head.
        runtime_env: Ray runtime environment of the job.
        submission_id: job id; ``None`` lets Ray generate one.
        client: an existing ``JobSubmissionClient`` to reuse.
    """
    from ray.job_submission import JobSubmissionClient

    client = client or JobSubmissionClient(address)
    # The head's dashboard answers before its job agent has registered, and
    # until then it rejects submissions with "No available agent"; that is
    # the one error worth waiting out.
    deadline = time.monotonic() + SUBMIT_AGENT_WAIT_S
    attempt = 0
    while True:
        attempt += 1
        try:
            job_id = client.submit_job(
                entrypoint=entrypoint,
                runtime_env=dict(runtime_env or {}) or None,
                submission_id=submission_id,
            )
            break
        except RuntimeError as error:
            if "No available agent" not in str(error) or time.monotonic() >= deadline:
                raise
            logger.warning(
                "Ray job agent at %s not ready (attempt %d): %s; retrying in 2 s",
                address,
                attempt,
                error,
            )
            time.sleep(2.0)
    logger.info("submitted Ray job %s to %s", job_id, address)
    return client, job_id


def wait_for_ray_job(
    client,
    job_id: str,
    *,
    timeout_s: float,
    poll_interval_s: float,
    stop_on_timeout: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll a submitted Ray job until it ends; return its final status name.

    Raises:
        RayJobFailedError: if it failed or was stopped (with its log's tail).
        TimeoutError: if it did not end within ``timeout_s``; with
            ``stop_on_timeout`` the job is stopped first.
    """
    from ray.job_submission import JobStatus

    deadline = clock() + timeout_s
    last = None
    while True:
        status = client.get_job_status(job_id)
        if status != last:
            logger.info("Ray job %s: %s", job_id, status)
            last = status
        if status == JobStatus.SUCCEEDED:
            return str(status.value)
        if status in (JobStatus.FAILED, JobStatus.STOPPED):
            tail = "\n".join(client.get_job_logs(job_id).splitlines()[-30:])
            raise RayJobFailedError(
                f"Ray job {job_id} ended {status.value}; log tail:\n{tail}"
            )
        if clock() >= deadline:
            if not stop_on_timeout:
                raise TimeoutError(
                    f"Ray job {job_id} did not finish within {timeout_s:.0f} s"
                )
            client.stop_job(job_id)
            logger.error(
                "Ray job %s timed out after %.0f s; stopped it", job_id, timeout_s
            )
            raise TimeoutError(
                f"Ray job {job_id} did not finish within {timeout_s:.0f} s and was stopped"
            )
        sleep(poll_interval_s)
