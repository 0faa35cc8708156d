"""Per-step task settings of the pipeline: resources, GPUs, retries, caching.

Two kinds of task settings live here:

* the task policy (retries with backoff on steps that call the network,
  caching on expensive deterministic steps), part of the pipeline's meaning
  and applied to every compile;
* the :class:`Placement` (CPU and memory requests, GPU type and count, node
  selectors and tolerations for GPU node pools, a memory-backed
  ``/dev/shm``, a GCS key secret), which depends on the cluster and is
  applied only when compiling for one. ``kfp.local`` ignores resources and
  accelerators with a warning and ignores the Kubernetes platform settings,
  so local runs compile without a placement.

Steps are named after their component functions (``featurize``,
``train_hgnn``, ...), see :data:`STEPS`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

logger = logging.getLogger(__name__)

STEPS = (
    "ingest",
    "split",
    "featurize",
    "build_graph",
    "train_hgnn",
    "publish_foundation",
    "train_two_tower",
    "export_bundle",
    "evaluate",
    "deploy",
)

# Steps that reach a network service and retry on failure: ingest may
# download the dataset, featurize may fetch model weights, train_hgnn may
# submit a RayJob, publish_foundation copies to GCS and deploy calls the
# Kubernetes API. Backoff doubles from 30 s up to 10 minutes.
RETRIED_STEPS = {
    "ingest": 3,
    "featurize": 2,
    "train_hgnn": 2,
    "publish_foundation": 3,
    "deploy": 3,
}
RETRY_BACKOFF = {"backoff_duration": "30s", "backoff_factor": 2.0,
                 "backoff_max_duration": "600s"}

# Steps whose output is a pure function of their inputs and settings, so a
# cache hit is correct. ingest reads a location whose contents may change
# under the same URI, so it is cached only on request (see
# apply_task_policy), and deploy and publish_foundation have side effects,
# so they always run.
CACHED_STEPS = frozenset(
    {"split", "featurize", "build_graph", "train_hgnn", "train_two_tower",
     "export_bundle", "evaluate"}
)

# Mount path of the service-account key inside a step's container. The
# file name is the one KServe's storage initializer looks for in a Secret
# attached to the predictor's service account, so one Secret serves both.
GCS_KEY_MOUNT = "/var/secrets/google"
GCS_KEY_FILE = "gcloud-application-credentials.json"


def apply_task_policy(task: Any, step: str, *, cache_ingest: bool = False) -> Any:
    """Set the retry policy and caching of one task, by step name.

    Args:
        task: a ``kfp.dsl.PipelineTask``.
        step: one of :data:`STEPS`.
        cache_ingest: cache the ingest step too. Only correct when the data
            behind a dataset name and URI never changes (the public
            datasets, dated snapshot folders). Every ingest run writes a
            new artifact, so without this the steps after it cannot hit
            the cache across runs.

    Returns:
        The same task.
    """
    _check_step(step)
    if step in RETRIED_STEPS:
        task.set_retry(num_retries=RETRIED_STEPS[step], **RETRY_BACKOFF)
    cached = step in CACHED_STEPS or (step == "ingest" and cache_ingest)
    task.set_caching_options(enable_caching=cached)
    return task


def _from_dict(cls: type, mapping: Mapping[str, Any], what: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ValueError(
            f"unknown {what} setting(s) {unknown}; known settings are {sorted(known)}"
        )
    return cls(**copy.deepcopy(dict(mapping)))


def _check_step(step: str) -> None:
    if step not in STEPS:
        raise ValueError(f"unknown pipeline step {step!r}; expected one of {STEPS}")


@dataclass
class Toleration:
    """A Kubernetes toleration, as kfp-kubernetes ``add_toleration`` takes it."""

    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = "NoSchedule"

    def __post_init__(self) -> None:
        if self.operator not in ("Exists", "Equal"):
            raise ValueError(
                f"toleration operator {self.operator!r} is invalid; use Exists or Equal"
            )
        if self.effect not in (None, "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ValueError(
                f"toleration effect {self.effect!r} is invalid; use NoSchedule, "
                "PreferNoSchedule or NoExecute"
            )


@dataclass
class StepPlacement:
    """Resources and scheduling of one step's pod.

    Args:
        cpu_request: CPU request, for example ``"4"`` or ``"500m"``.
        cpu_limit: CPU limit; None for none.
        memory_request: memory request, for example ``"16G"``.
        memory_limit: memory limit; None for none.
        accelerator_type: the accelerator's resource name, for example
            ``nvidia.com/gpu``; None for a CPU step.
        accelerator_count: accelerators per pod when ``accelerator_type``
            is set.
        node_selector: node labels the pod must match, for example
            ``{"cloud.google.com/gke-accelerator": "nvidia-l4"}``.
        tolerations: taints the pod tolerates, for GPU node pools.
        shm_size: size of a memory-backed ``/dev/shm`` (vLLM and Ray need
            more than the container runtime's 64 MB), for example ``"8Gi"``;
            None keeps the default.
    """

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    accelerator_type: str | None = None
    accelerator_count: int = 1
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[Toleration] = field(default_factory=list)
    shm_size: str | None = None

    def __post_init__(self) -> None:
        if self.accelerator_type and self.accelerator_count < 1:
            raise ValueError(
                f"accelerator_count={self.accelerator_count} with accelerator_type "
                f"{self.accelerator_type!r}; use a count of at least 1 or drop the type"
            )
        self.tolerations = [
            t if isinstance(t, Toleration) else Toleration(**t) for t in self.tolerations
        ]

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> "StepPlacement":
        """Build from a mapping, raising ValueError naming any unknown key."""
        return _from_dict(cls, mapping, "step placement")


@dataclass
class Placement:
    """Per-step placement for one kind of cluster.

    Args:
        steps: placement by step name; a step not listed gets no requests.
        gcs_key_secret: name of a Secret whose key
            ``gcloud-application-credentials.json`` is a GCP service-account
            key, mounted into every step, for clusters
            without Workload Identity (kind, minikube); None on GKE, where
            the run's Kubernetes service account maps to a GCP one.
        image_pull_policy: ``Always``, ``IfNotPresent`` or ``Never``
            (``IfNotPresent`` for images loaded into kind); None keeps the
            cluster default.
    """

    steps: dict[str, StepPlacement] = field(default_factory=dict)
    gcs_key_secret: str | None = None
    image_pull_policy: str | None = None

    def __post_init__(self) -> None:
        for step in self.steps:
            _check_step(step)
        self.steps = {
            step: value if isinstance(value, StepPlacement) else StepPlacement.from_dict(value)
            for step, value in self.steps.items()
        }
        if self.image_pull_policy not in (None, "Always", "IfNotPresent", "Never"):
            raise ValueError(
                f"image_pull_policy {self.image_pull_policy!r} is invalid; use Always, "
                "IfNotPresent or Never"
            )

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> "Placement":
        """Build from a mapping (a placement YAML document).

        Raises:
            ValueError: naming an unknown key or step.
        """
        return _from_dict(cls, mapping, "placement")

    def to_dict(self) -> dict[str, Any]:
        """Return the placement as a JSON-ready mapping."""
        return dataclasses.asdict(self)

    def apply(self, task: Any, step: str) -> Any:
        """Apply this placement's settings for ``step`` to a task.

        Args:
            task: a ``kfp.dsl.PipelineTask``.
            step: one of :data:`STEPS`.

        Returns:
            The same task.
        """
        from kfp import kubernetes

        _check_step(step)
        spec = self.steps.get(step, StepPlacement())
        if spec.cpu_request:
            task.set_cpu_request(spec.cpu_request)
        if spec.cpu_limit:
            task.set_cpu_limit(spec.cpu_limit)
        if spec.memory_request:
            task.set_memory_request(spec.memory_request)
        if spec.memory_limit:
            task.set_memory_limit(spec.memory_limit)
        if spec.accelerator_type:
            task.set_accelerator_type(spec.accelerator_type)
            task.set_accelerator_limit(spec.accelerator_count)

        for label, value in spec.node_selector.items():
            kubernetes.add_node_selector(task, label_key=label, label_value=value)
        for toleration in spec.tolerations:
            kubernetes.add_toleration(
                task, key=toleration.key, operator=toleration.operator,
                value=toleration.value, effect=toleration.effect,
            )
        if spec.shm_size:
            kubernetes.empty_dir_mount(
                task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                size_limit=spec.shm_size,
            )

        if self.gcs_key_secret:
            kubernetes.use_secret_as_volume(
                task, secret_name=self.gcs_key_secret, mount_path=GCS_KEY_MOUNT
            )
            task.set_env_variable(
                "GOOGLE_APPLICATION_CREDENTIALS", f"{GCS_KEY_MOUNT}/{GCS_KEY_FILE}"
            )
        if self.image_pull_policy:
            kubernetes.set_image_pull_policy(task, self.image_pull_policy)
        return task


def _gpu_step(cpu: str, memory: str, node_pool_accelerator: str | None) -> StepPlacement:
    selector = (
        {"cloud.google.com/gke-accelerator": node_pool_accelerator}
        if node_pool_accelerator else {}
    )
    return StepPlacement(
        cpu_request=cpu, memory_request=memory, memory_limit=memory,
        accelerator_type="nvidia.com/gpu", accelerator_count=1,
        node_selector=selector,
        # GKE taints GPU node pools with nvidia.com/gpu=present:NoSchedule.
        tolerations=[Toleration(key="nvidia.com/gpu")],
        shm_size="8Gi",
    )


def _cpu_steps(scale: int) -> dict[str, StepPlacement]:
    small = StepPlacement(cpu_request="1", memory_request="2G", memory_limit="4G")
    large = StepPlacement(
        cpu_request=str(2 * scale), memory_request=f"{4 * scale}G",
        memory_limit=f"{4 * scale}G",
    )
    return {
        "ingest": small,
        "split": copy.deepcopy(large),
        "build_graph": copy.deepcopy(large),
        "publish_foundation": copy.deepcopy(small),
        "train_two_tower": copy.deepcopy(large),
        "export_bundle": copy.deepcopy(small),
        "evaluate": copy.deepcopy(large),
        "deploy": copy.deepcopy(small),
    }


def hgnn_trains_in_step(hgnn: Mapping[str, Any]) -> bool:
    """Return whether the train_hgnn step runs Ray Train inside its own pod.

    Only the ``local`` launcher without ``ray_address`` does. The ``rayjob``
    and ``job-submission`` launchers, and ``local`` attached to another
    cluster, submit the training and wait for it, so the Ray cluster's
    workers hold the GPUs and the step's pod needs none.

    Args:
        hgnn: the ``hgnn`` section of the run settings; a missing key takes
            ``HGNNConfig``'s default (``launcher="local"``,
            ``ray_address=None``).
    """
    return hgnn.get("launcher", "local") == "local" and not hgnn.get("ray_address")


def gke_placement(accelerator: str = "nvidia-l4", *, hgnn_gpu: bool = True) -> Placement:
    """Return the placement for GKE with a GPU node pool of ``accelerator``.

    featurize, and train_hgnn with ``hgnn_gpu``, get one ``nvidia.com/gpu``
    on a node of the pool (``cloud.google.com/gke-accelerator``), a
    toleration for the GPU taint and an 8 GiB memory-backed ``/dev/shm``.
    CPU steps get 1 to 8 cores. GCS access comes from Workload Identity.

    Args:
        accelerator: the node pool's ``cloud.google.com/gke-accelerator``
            label, for example ``nvidia-l4``.
        hgnn_gpu: give train_hgnn a GPU, or else 1 CPU and no GPU. Pass
            ``hgnn_trains_in_step(run_config.hgnn)``, because a step that
            only submits a ``RayJob`` or a Ray job would leave its GPU idle
            while the job runs.
    """
    steps = _cpu_steps(scale=4)
    steps["featurize"] = _gpu_step("4", "16G", accelerator)
    if hgnn_gpu:
        # NOTE: the GPU is requested whatever hgnn.use_gpu says, so a local
        # run with use_gpu false (HGNNConfig's default) leaves it idle.
        steps["train_hgnn"] = _gpu_step("8", "32G", accelerator)
    else:
        steps["train_hgnn"] = StepPlacement(
            cpu_request="1", memory_request="2G", memory_limit="4G"
        )
        logger.info("train_hgnn gets no GPU: it submits the training to a Ray cluster")
    return Placement(steps=steps)


def cpu_cluster_placement(gcs_key_secret: str | None = "gfm-gcs-key") -> Placement:
    """Return the placement for a small CPU-only cluster (kind, minikube).

    No step requests a GPU; featurize and train_hgnn still get a 2 GiB
    memory-backed ``/dev/shm`` for vLLM's and Ray's shared memory. Images
    loaded with ``kind load docker-image`` are used as they are.
    """
    steps = _cpu_steps(scale=1)
    for step in ("featurize", "train_hgnn"):
        steps[step] = StepPlacement(
            cpu_request="2", memory_request="6G", memory_limit="8G", shm_size="2Gi"
        )
    return Placement(steps=steps, gcs_key_secret=gcs_key_secret,
                     image_pull_policy="IfNotPresent")


PRESETS = {"gke": gke_placement, "cpu-cluster": cpu_cluster_placement}


def load_placement(name_or_path: str) -> Placement:
    """Return a preset placement (``gke``, ``cpu-cluster``) or read a YAML file.

    Raises:
        FileNotFoundError: if it is neither a preset nor a file.
        ValueError: if the file's settings are invalid.
    """
    from pathlib import Path

    import yaml

    if name_or_path in PRESETS:
        return PRESETS[name_or_path]()
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"placement {name_or_path!r} not found: give a YAML file or one of "
            f"the presets {sorted(PRESETS)}"
        )
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return Placement.from_dict(document)
