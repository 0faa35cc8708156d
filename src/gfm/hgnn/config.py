"""Settings of HGNN training: model, sampling, objective, Ray Train, launcher.

The 2T-HGNN paper (arXiv 2403.05185) trains for at most 50 epochs with
patience 10, Adam at lr 1e-3 and batch 256 over every training edge. The
shipped defaults keep lr and batch size but cap the edges drawn per relation
and per epoch, and stop sooner. That way the full MovieLens-1M graph trains
in a few minutes on two CPU cores. ``HGNNConfig.paper()`` returns the
paper's values, and docs/hgnn.md records the measurements behind each
default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LAUNCHERS = ("local", "rayjob", "job-submission")
EARLY_STOPPING_METRICS = ("val_auc", "val_hr")


def _known_settings(cls: type, values: Mapping[str, Any] | None, section: str) -> dict:
    """Return ``values`` as a dict after checking every key is a field of ``cls``.

    Raises:
        ValueError: naming the unknown keys and the valid ones.
    """
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown {section} settings {unknown}; valid keys are {sorted(known)}"
        )
    return values


def _is_int(value: Any) -> bool:
    # bool is a subclass of int, but True is no layer count.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_real(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _whole_floats_to_int(settings: Any) -> None:
    """Convert whole-number floats such as 128.0 in integer fields to int.

    Settings that passed through a protobuf Struct (KFP) arrive with every
    number as a float. Other floats such as 2.5 stay, so validation rejects
    them instead of truncating them.
    """
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.type.startswith("int") and isinstance(value, float) and value.is_integer():
            setattr(settings, f.name, int(value))


def _require_int(section: str, name: str, value: Any, minimum: int, rule: str) -> None:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{section} setting {name}={value!r} must be {rule}")


def _require_bool(section: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(  # noqa: TRY004 (every invalid setting is a ValueError)
            f"{section} setting {name}={value!r} must be true or false"
        )


def _fanout_list(name: str, values: Any) -> list[int]:
    """Return a fan-out setting as a list of ints.

    Raises:
        ValueError: for a string or other non-list, or an entry that is not
            a whole number (2.7 is rejected, not truncated).
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(  # noqa: TRY004 (every invalid setting is a ValueError)
            f"HGNN setting {name}={values!r} must be a list of integers, one per "
            "layer, such as [10, 5]"
        )
    fanouts = []
    for value in values:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not _is_int(value):
            raise ValueError(
                f"HGNN setting {name}={list(values)!r} contains {value!r}; each "
                "fan-out must be a whole number, or -1 for all neighbours"
            )
        fanouts.append(value)
    return fanouts


def _default_tolerations() -> list[dict[str, str]]:
    return [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@dataclass
class ClusterConfig:
    """Settings of the ``rayjob`` and ``job-submission`` launchers.

    Args:
        namespace: Kubernetes namespace of the ``RayJob``.
        name_prefix: prefix of generated ``RayJob`` names.
        image: container image of head and workers; ``None`` uses
            ``gfm.settings.image("train")``.
        ray_version: Ray version of the image, for KubeRay.
        service_account: service account of the pods, which read and write
            ``gs://`` (through Workload Identity on GKE); ``None`` uses the
            namespace's default.
        head_cpu: CPU request and limit of the head (Kubernetes quantity).
        head_memory: memory of the head; the driver embeds the full graph
            there after training.
        worker_replicas: GPU worker pods.
        worker_cpu: CPU request and limit per worker pod.
        worker_memory: memory per worker pod.
        gpus_per_worker: ``nvidia.com/gpu`` per worker pod.
        shm_size: size of the in-memory ``/dev/shm`` volume of each pod.
        tolerations: tolerations of the worker pods (GPU node taints).
        node_selector: node selector of the worker pods, for example
            ``{"cloud.google.com/gke-accelerator": "nvidia-l4"}``.
        env: extra environment variables of every container.
        shutdown_after_job_finishes: delete the RayCluster when the job ends.
        ttl_seconds_after_finished: seconds KubeRay keeps a finished
            ``RayJob`` before deleting it.
        active_deadline_seconds: seconds after which KubeRay fails the
            ``RayJob``; ``None`` sets no deadline.
        timeout_s: seconds :func:`wait_for_rayjob` and
            :func:`wait_for_ray_job` wait before raising ``TimeoutError``.
        delete_on_timeout: delete a ``RayJob`` that timed out (and with it
            its RayCluster), or stop a submitted job that timed out.
        poll_interval_s: seconds between status polls.
        address: dashboard address of a running RayCluster for the
            ``job-submission`` launcher, such as
            ``http://raycluster-head-svc.ray:8265``.
    """

    namespace: str = "gfm"
    name_prefix: str = "gfm-hgnn"
    image: str | None = None
    ray_version: str = "2.60.0"
    service_account: str | None = "gfm-workload"
    head_cpu: str = "4"
    head_memory: str = "16Gi"
    worker_replicas: int = 2
    worker_cpu: str = "8"
    worker_memory: str = "32Gi"
    gpus_per_worker: int = 1
    shm_size: str = "8Gi"
    tolerations: list[dict[str, str]] = field(default_factory=_default_tolerations)
    node_selector: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    shutdown_after_job_finishes: bool = True
    ttl_seconds_after_finished: int = 3600
    active_deadline_seconds: int | None = 6 * 3600
    timeout_s: float = 6 * 3600.0
    delete_on_timeout: bool = True
    poll_interval_s: float = 15.0
    address: str | None = None

    def __post_init__(self) -> None:
        _whole_floats_to_int(self)
        section = "HGNN cluster"
        _require_int(
            section, "worker_replicas", self.worker_replicas, 1, "a positive integer"
        )
        _require_int(
            section,
            "gpus_per_worker",
            self.gpus_per_worker,
            0,
            "0 or a positive integer",
        )
        _require_int(
            section,
            "ttl_seconds_after_finished",
            self.ttl_seconds_after_finished,
            0,
            "0 or more seconds",
        )
        if self.active_deadline_seconds is not None:
            _require_int(
                section,
                "active_deadline_seconds",
                self.active_deadline_seconds,
                1,
                "a positive number of seconds, or null for no deadline",
            )
        for name in ("timeout_s", "poll_interval_s"):
            value = getattr(self, name)
            if not _is_finite_real(value) or value <= 0:
                raise ValueError(
                    f"{section} setting {name}={value!r} must be a positive number "
                    "of seconds"
                )
        for name in ("shutdown_after_job_finishes", "delete_on_timeout"):
            _require_bool(section, name, getattr(self, name))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ClusterConfig:
        """Build settings from a mapping.

        Raises:
            ValueError: if a key is not a setting.
        """
        return cls(**_known_settings(cls, values, "HGNN cluster"))


@dataclass
class HGNNConfig:
    """Settings of one HGNN training run.

    Args:
        hidden_dim: width of the input projection and the hidden layers.
        out_dim: dimension of the output item embeddings.
        num_layers: number of heterogeneous GraphSAGE layers.
        num_neighbors: neighbours sampled per relation and per node at each
            hop during training, in PyG's ``NeighborLoader`` order:
            ``num_neighbors[0]`` is the fan-out of the seed nodes, which the
            last (output) layer aggregates, and ``num_neighbors[-1]`` the
            fan-out of the hop farthest from them, which the first layer
            aggregates. ``-1`` takes all.
        inference_num_neighbors: the same, in the same order, for inference
            and validation. ``None`` uses every edge at every layer.
        project: apply a linear layer and ReLU to each neighbour before the
            max-pool (GraphSAGE's pooling aggregator). Off by default: on
            MovieLens-1M the plain max scored higher (docs/hgnn.md).
        dropout: dropout probability between layers.
        isolate_fraction: share of each training batch's nodes whose
            incoming edges are removed for that step, so the network also
            learns to embed a node from its features alone, as it must for
            items without edges. 0 turns it off.
        margin: margin of the max-margin (hinge) loss on cosine scores.
        num_negatives: random negative items drawn per positive edge.
        in_batch_negatives: also use the other positives of a batch as
            negatives; on by default, since it raised HR@10 on MovieLens-1M.
        balanced_sampling: cap the training edges of each relation per epoch
            (redrawn every epoch) so relations count equally.
        edges_per_relation: the cap; ``None`` uses the size of the smallest
            relation. A relation smaller than the cap is used whole.
        valid_fraction: share of each relation's edges held out for
            validation (and removed from the message-passing graph).
        max_valid_edges: validation edges scored per relation, a seeded
            sample, to bound the cost of ``HR@K``.
        hr_k: cut-off ``K`` of the validation ``HR@K``.
        max_epochs: upper bound on training epochs.
        patience: epochs without improvement of ``early_stopping_metric``
            before stopping.
        early_stopping_metric: ``val_auc`` or ``val_hr``.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        batch_size: positive edges per training step and worker.
        seed: seed of the split, the epoch draws and the initial weights.
        embed_batch_size: destination nodes per chunk in full-graph
            inference.
        num_workers: Ray Train workers; each trains on its own share of the
            epoch's edges and gradients are averaged by DDP.
        cpus_per_worker: CPUs reserved per worker (also its torch threads).
        use_gpu: one GPU per worker.
        max_failures: worker failures Ray Train recovers from by restarting
            the worker group from the latest checkpoint.
        checkpoint_every: epochs between checkpoints.
        keep_checkpoints: checkpoints kept in storage, newest first.
        storage_path: Ray Train storage (local path or ``gs://``); ``None``
            uses ``<out_uri>/ray``.
        run_name: Ray Train run name, the run's folder under
            ``storage_path``; ``None`` generates a unique one per call. A
            named run whose folder exists already raises, unless
            ``resume_run`` is set.
        resume_run: continue the Ray Train run ``run_name`` from the latest
            checkpoint in its folder, for example after the driver died.
            Ray Train restores that checkpoint whatever graph or settings it
            came from.
        launcher: ``local`` (Ray Train from this process), ``rayjob``
            (submit a KubeRay ``RayJob``) or ``job-submission`` (submit to a
            running RayCluster through ``JobSubmissionClient``).
        ray_address: cluster the ``local`` launcher attaches to; ``None``
            starts a local Ray cluster, ``auto`` attaches to the cluster the
            process runs in.
        ray_temp_dir: ``_temp_dir`` of a started local Ray cluster; ``None``
            makes a short folder under /tmp (Unix socket paths must stay
            under 108 bytes).
        cluster: settings of the ``rayjob`` and ``job-submission``
            launchers.
    """

    hidden_dim: int = 128
    out_dim: int = 128
    num_layers: int = 2
    num_neighbors: list[int] = field(default_factory=lambda: [10, 5])
    inference_num_neighbors: list[int] | None = None
    project: bool = False
    dropout: float = 0.0
    isolate_fraction: float = 0.0
    margin: float = 0.2
    num_negatives: int = 1
    in_batch_negatives: bool = True
    balanced_sampling: bool = True
    edges_per_relation: int | None = 20_000
    valid_fraction: float = 0.1
    max_valid_edges: int = 2_000
    hr_k: int = 10
    max_epochs: int = 10
    patience: int = 3
    early_stopping_metric: str = "val_auc"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    seed: int = 0
    embed_batch_size: int = 4096
    num_workers: int = 2
    cpus_per_worker: int = 1
    use_gpu: bool = False
    max_failures: int = 2
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    storage_path: str | None = None
    run_name: str | None = None
    resume_run: bool = False
    launcher: str = "local"
    ray_address: str | None = None
    ray_temp_dir: str | None = None
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        if isinstance(self.cluster, Mapping):
            self.cluster = ClusterConfig.from_dict(self.cluster)
        _whole_floats_to_int(self)
        self.num_neighbors = _fanout_list("num_neighbors", self.num_neighbors)
        if self.inference_num_neighbors is not None:
            self.inference_num_neighbors = _fanout_list(
                "inference_num_neighbors", self.inference_num_neighbors
            )
        self.validate()

    def validate(self) -> None:
        """Check every value.

        Raises:
            ValueError: naming the first invalid setting and its valid range.
        """
        section = "HGNN"
        positive = (
            "hidden_dim",
            "out_dim",
            "num_layers",
            "num_negatives",
            "max_valid_edges",
            "hr_k",
            "max_epochs",
            "patience",
            "batch_size",
            "embed_batch_size",
            "num_workers",
            "cpus_per_worker",
            "checkpoint_every",
            "keep_checkpoints",
        )
        for name in positive:
            _require_int(section, name, getattr(self, name), 1, "a positive integer")
        if self.edges_per_relation is not None:
            _require_int(
                section,
                "edges_per_relation",
                self.edges_per_relation,
                1,
                "a positive integer, or null for the size of the smallest relation",
            )
        _require_int(
            section,
            "max_failures",
            self.max_failures,
            -1,
            "-1 (retry forever), 0 or a positive integer",
        )
        if not _is_int(self.seed):
            raise ValueError(f"HGNN setting seed={self.seed!r} must be an integer")
        for name in ("num_neighbors", "inference_num_neighbors"):
            fanouts = getattr(self, name)
            if fanouts is None:
                continue
            if len(fanouts) != self.num_layers:
                raise ValueError(
                    f"HGNN setting {name}={fanouts} needs one fan-out per layer "
                    f"(num_layers={self.num_layers})"
                )
            if any(n == 0 or n < -1 for n in fanouts):
                raise ValueError(
                    f"HGNN setting {name}={fanouts}: each fan-out must be positive, "
                    "or -1 for all neighbours"
                )
        self._validate_reals()
        for name in (
            "project",
            "in_batch_negatives",
            "balanced_sampling",
            "use_gpu",
            "resume_run",
        ):
            _require_bool(section, name, getattr(self, name))
        if self.run_name is not None and (
            not isinstance(self.run_name, str)
            or not self.run_name
            or "/" in self.run_name
        ):
            raise ValueError(
                f"HGNN setting run_name={self.run_name!r} must be a non-empty folder "
                "name without '/', or null for a generated one"
            )
        if self.resume_run and self.run_name is None:
            raise ValueError(
                "HGNN setting resume_run=true needs run_name, the Ray Train run to "
                "continue under storage_path"
            )
        if self.early_stopping_metric not in EARLY_STOPPING_METRICS:
            raise ValueError(
                f"HGNN setting early_stopping_metric={self.early_stopping_metric!r} "
                f"is not one of {EARLY_STOPPING_METRICS}"
            )
        if self.launcher not in LAUNCHERS:
            raise ValueError(
                f"HGNN setting launcher={self.launcher!r} is not one of {LAUNCHERS}"
            )

    def _validate_reals(self) -> None:
        # NaN fails every comparison, so each range check first requires a
        # finite number.
        for name in ("valid_fraction", "dropout", "isolate_fraction", "margin", "lr",
                     "weight_decay"):
            value = getattr(self, name)
            if not _is_finite_real(value):
                raise ValueError(
                    f"HGNN setting {name}={value!r} must be a finite number"
                )
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(
                f"HGNN setting valid_fraction={self.valid_fraction!r} must lie in (0, 1)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"HGNN setting dropout={self.dropout!r} must lie in [0, 1)"
            )
        if not 0.0 <= self.isolate_fraction < 1.0:
            raise ValueError(
                f"HGNN setting isolate_fraction={self.isolate_fraction!r} must lie "
                "in [0, 1)"
            )
        if self.margin <= 0.0:
            raise ValueError(f"HGNN setting margin={self.margin!r} must be positive")
        if self.lr <= 0.0:
            raise ValueError(f"HGNN setting lr={self.lr!r} must be positive")
        if self.weight_decay < 0.0:
            raise ValueError(
                f"HGNN setting weight_decay={self.weight_decay!r} must be non-negative"
            )

    @property
    def inference_fanouts(self) -> list[int]:
        """Fan-outs used by inference and validation, one per layer."""
        if self.inference_num_neighbors is None:
            return [-1] * self.num_layers
        return list(self.inference_num_neighbors)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> HGNNConfig:
        """Build settings from a mapping, such as one section of a run's YAML.

        Raises:
            ValueError: if a key is not a setting, or a value is invalid.
        """
        return cls(**_known_settings(cls, values, "HGNN"))

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain JSON-ready values."""
        return dataclasses.asdict(self)

    def non_defaults(self) -> dict[str, Any]:
        """Return the settings that differ from the defaults, ``cluster`` left out.

        The ``rayjob`` and ``job-submission`` launchers pass these to the job,
        which keeps its command line short.
        """
        default = HGNNConfig().to_dict()
        values = self.to_dict()
        values.pop("cluster")
        return {k: v for k, v in values.items() if v != default[k]}

    def replace(self, **changes: Any) -> HGNNConfig:
        """Return a copy with some settings changed (and validated)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def paper(cls, **changes: Any) -> HGNNConfig:
        """Return the training schedule of the 2T-HGNN paper.

        At most 50 epochs, patience 10, every training edge of the smallest
        relation per epoch (``edges_per_relation=None``), Adam at lr 1e-3,
        batch 256.
        """
        values: dict[str, Any] = {
            "max_epochs": 50,
            "patience": 10,
            "edges_per_relation": None,
            "lr": 1e-3,
            "batch_size": 256,
        }
        values.update(changes)
        return cls(**values)
