"""Settings of the deploy step: the InferenceService and the promotion gate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gfm.serving.config import ServingConfig, settings_from_dict

DEPLOYMENT_MODES = ("Knative", "Standard")


@dataclass
class DeployConfig:
    """Settings of :func:`gfm.serving.deploy.deploy_bundle`.

    Args:
        name: InferenceService name.
        namespace: Kubernetes namespace.
        image: predictor image; ``None`` uses ``gfm.settings.image("serve")``.
        deployment_mode: value of the ``serving.kserve.io/deploymentMode``
            annotation, ``Knative`` or ``Standard`` (KServe 0.16 and later).
        min_replicas: minimum predictor replicas.
        max_replicas: maximum predictor replicas.
        canary_traffic_percent: share of traffic, in percent, that an updated
            revision gets until promoted; 100 rolls out at once. Knative only.
        scale_target: autoscaling target per replica, in ``scale_metric`` units.
        scale_metric: ``concurrency``, ``rps``, ``cpu`` or ``memory``.
        request_timeout_s: predictor request timeout, in seconds.
        cpu_request: CPU request of the predictor container.
        memory_request: memory request of the predictor container.
        cpu_limit: CPU limit of the predictor container.
        memory_limit: memory limit of the predictor container.
        service_account: service account of the predictor pods.
        model_name: model name in request paths.
        serving: :class:`gfm.serving.config.ServingConfig` settings passed to
            ``gfm serve --config``; empty keeps the defaults.
        gate_metric: dotted path of the gate metric in each product's model
            card; higher is better.
        gate_tolerance: relative drop from the deployed model's value that
            still passes, for example 0.02 for 2%.
        gate_min_value: lowest value that passes, deployed model or not;
            must be finite.
        gate_require_equal: dotted model card paths that must be present
            and equal in both cards for their metrics to be comparable. The
            default requires the same product, item types, K, dataset and
            split settings, so a scheduled run on newer data of the same
            dataset is compared; add ``data`` to require the same snapshot
            (row counts too).
        allow_missing_baseline: when the deployed card of a product has no
            numeric ``gate_metric``, compare the candidate with
            ``gate_min_value`` alone instead of failing the gate.
        bundle_root: folder (``gs://`` or local) below which the deploy step
            copies each bundle to ``<bundle_root>/<model_version>/`` and
            serves it from there, so the bundle behind a deployed version
            is never overwritten. ``None`` serves the candidate's own URI.
        force: deploy even when the gate fails, the deployed model's cards
            cannot be read or they belong to another version than the one
            the InferenceService reports.
        ready_timeout_s: how long to wait for the InferenceService to become
            ready, in seconds.
        poll_interval_s: time between readiness checks, in seconds.
        dry_run: build the InferenceService and decide, but send nothing.
    """

    name: str = "gfm-recommender"
    namespace: str = "gfm"
    image: str | None = None
    deployment_mode: str = "Knative"
    min_replicas: int = 1
    max_replicas: int = 4
    canary_traffic_percent: int = 10
    scale_target: int = 16
    scale_metric: str = "concurrency"
    request_timeout_s: int = 30
    cpu_request: str = "1"
    memory_request: str = "2Gi"
    cpu_limit: str = "2"
    memory_limit: str = "4Gi"
    service_account: str = "gfm-workload"
    model_name: str = "gfm"
    serving: dict[str, Any] = field(default_factory=dict)
    gate_metric: str = "metrics.best_valid_recall"
    gate_tolerance: float = 0.0
    gate_min_value: float = 0.0
    gate_require_equal: tuple[str, ...] = (
        "product", "item_types", "metrics.eval_k", "data.dataset", "data.split.settings")
    allow_missing_baseline: bool = False
    bundle_root: str | None = None
    force: bool = False
    ready_timeout_s: float = 600.0
    poll_interval_s: float = 10.0
    dry_run: bool = False

    def __post_init__(self) -> None:
        self.gate_require_equal = tuple(self.gate_require_equal)
        if self.deployment_mode not in DEPLOYMENT_MODES:
            raise ValueError(f"deploy.deployment_mode must be one of {DEPLOYMENT_MODES}, "
                             f"got {self.deployment_mode!r}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"deploy replicas need 1 <= min_replicas <= max_replicas, got "
                             f"{self.min_replicas} and {self.max_replicas}")
        if not 1 <= self.canary_traffic_percent <= 100:
            raise ValueError(f"deploy.canary_traffic_percent must be 1 to 100, got "
                             f"{self.canary_traffic_percent}")
        if self.deployment_mode == "Standard" and self.canary_traffic_percent != 100:
            raise ValueError("canary rollouts need Knative revisions: with "
                             "deployment_mode 'Standard' set canary_traffic_percent to 100")
        if self.scale_metric not in ("concurrency", "rps", "cpu", "memory"):
            raise ValueError(f"deploy.scale_metric must be concurrency, rps, cpu or memory, "
                             f"got {self.scale_metric!r}")
        if not 0.0 <= self.gate_tolerance < 1.0:
            raise ValueError(f"deploy.gate_tolerance must be in [0, 1), got "
                             f"{self.gate_tolerance}")
        if not isinstance(self.gate_min_value, (int, float)) or isinstance(
                self.gate_min_value, bool) or not math.isfinite(self.gate_min_value):
            raise ValueError(f"deploy.gate_min_value must be a finite number, got "
                             f"{self.gate_min_value!r}; use 0.0 for no minimum")
        if self.bundle_root is not None and not str(self.bundle_root).strip():
            raise ValueError("deploy.bundle_root is empty; give a folder such as "
                             "gs://BUCKET/bundles, or null to serve the candidate's URI")
        if self.ready_timeout_s <= 0 or self.poll_interval_s <= 0:
            raise ValueError("deploy.ready_timeout_s and deploy.poll_interval_s must be "
                             "positive")
        ServingConfig.from_dict(self.serving)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any] | None) -> DeployConfig:
        """Build the settings from a mapping, with defaults for missing keys.

        Raises:
            ValueError: naming any key that is not a setting.
        """
        return settings_from_dict(cls, mapping, "deploy")
