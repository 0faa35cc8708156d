"""Create or update the recommender's InferenceService through KServe's SDK.

:func:`deploy_bundle` reads the candidate bundle's model cards, looks up the
InferenceService in the cluster and runs the gate of :mod:`gfm.serving.gate`
against the bundle it serves. Only if the gate passes does it create the
InferenceService or patch it to the new ``STORAGE_URI``. It then waits until
KServe reports the InferenceService ready for the new generation.

NOTE: no cluster runs in this repository's tests. They check every decision
and the exact object sent through ``KServeClient`` against a fake Kubernetes
custom-objects API; the apply itself against a real KServe is untested here.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from gfm import settings
from gfm.serving.deploy_config import DeployConfig
from gfm.serving.gate import BundleCards, GateResult, evaluate_gate, read_bundle_cards

logger = logging.getLogger(__name__)

API_VERSION = "serving.kserve.io/v1beta1"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
MODEL_VERSION_ANNOTATION = "gfm.dev/model-version"
CONTAINER_NAME = "kserve-container"
PORT = 8080


class DeployTimeoutError(TimeoutError):
    """The InferenceService did not become ready in time."""


@dataclass
class DeployResult:
    """Decision and outcome of one :func:`deploy_bundle` call.

    Args:
        action: ``created``, ``patched``, ``skipped`` (gate failed or the
            version is already deployed) or ``dry_run``.
        model_version: the candidate bundle's version.
        storage_uri: the candidate bundle's URI.
        deployed_version: the version served before, or ``None``.
        gate: the gate's decision.
        ready: whether the InferenceService reported ready for the change.
        inference_service: the object sent (or that would be sent), as JSON.
        seconds: wall time of the call.
    """

    action: str
    model_version: str
    storage_uri: str
    deployed_version: str | None
    gate: GateResult
    ready: bool = False
    inference_service: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_client() -> Any:
    """Return a ``KServeClient`` for the cluster this process runs in (or the
    kubeconfig's current context outside a cluster)."""
    from gfm.serving.kserve_import import kserve

    return kserve.KServeClient()


def build_inference_service(config: DeployConfig, storage_uri: str, model_version: str,
                            canary: bool) -> Any:
    """Build the ``V1beta1InferenceService`` that serves one bundle.

    Args:
        config: deploy settings.
        storage_uri: the bundle's ``gs://`` prefix, passed as ``STORAGE_URI``
            so KServe's storage initializer downloads it to ``/mnt/models``.
        model_version: written to the ``gfm.dev/model-version`` annotation.
        canary: set ``canaryTrafficPercent`` (an update of a Knative service);
            a new service takes all traffic on its first revision.

    Returns:
        A ``kserve.V1beta1InferenceService``.
    """
    from kubernetes import client as k8s

    from gfm.serving.kserve_import import kserve

    args = ["--bundle=/mnt/models", "--host=0.0.0.0", f"--port={PORT}",
            f"--name={config.model_name}"]
    if config.serving:
        args.append("--config=" + json.dumps(config.serving, sort_keys=True))
    container = k8s.V1Container(
        name=CONTAINER_NAME,
        image=config.image or settings.image("serve"),
        args=args,
        env=[k8s.V1EnvVar(name="STORAGE_URI", value=storage_uri),
             k8s.V1EnvVar(name="GFM_LOG_LEVEL", value="INFO")],
        ports=[k8s.V1ContainerPort(container_port=PORT, protocol="TCP")],
        readiness_probe=k8s.V1Probe(
            http_get=k8s.V1HTTPGetAction(path=f"/v1/models/{config.model_name}", port=PORT),
            period_seconds=5, failure_threshold=3),
        resources=k8s.V1ResourceRequirements(
            requests={"cpu": config.cpu_request, "memory": config.memory_request},
            limits={"cpu": config.cpu_limit, "memory": config.memory_limit}),
    )
    predictor = kserve.V1beta1PredictorSpec(
        service_account_name=config.service_account,
        min_replicas=config.min_replicas,
        max_replicas=config.max_replicas,
        canary_traffic_percent=config.canary_traffic_percent if canary else None,
        scale_target=config.scale_target,
        scale_metric=config.scale_metric,
        timeout=config.request_timeout_s,
        containers=[container],
    )
    return kserve.V1beta1InferenceService(
        api_version=API_VERSION,
        kind="InferenceService",
        metadata=k8s.V1ObjectMeta(
            name=config.name,
            namespace=config.namespace,
            labels={"app.kubernetes.io/name": "gfm",
                    "app.kubernetes.io/component": "recommender"},
            annotations={DEPLOYMENT_MODE_ANNOTATION: config.deployment_mode,
                         MODEL_VERSION_ANNOTATION: model_version},
        ),
        spec=kserve.V1beta1InferenceServiceSpec(predictor=predictor),
    )


def to_json(inference_service: Any) -> dict[str, Any]:
    """Serialize an SDK object exactly as the Kubernetes client sends it."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(inference_service)


def get_inference_service(client: Any, name: str, namespace: str) -> dict[str, Any] | None:
    """Return the InferenceService as a dict, or ``None`` if it does not exist.

    Raises:
        RuntimeError: on any API error other than 404.
    """
    from kubernetes.client.rest import ApiException

    try:
        return client.get(name, namespace=namespace)
    except RuntimeError as error:
        # KServeClient wraps the ApiException in a RuntimeError raised inside
        # its except block, so the original is the error's context.
        cause = error.__context__
        if isinstance(cause, ApiException) and cause.status == 404:
            return None
        raise


def deployed_storage_uri(inference_service: dict[str, Any]) -> str | None:
    """Return the ``STORAGE_URI`` of the predictor container, if set."""
    predictor = inference_service.get("spec", {}).get("predictor", {})
    for container in predictor.get("containers") or []:
        for variable in container.get("env") or []:
            if variable.get("name") == "STORAGE_URI":
                return variable.get("value")
    model = predictor.get("model") or {}
    return model.get("storageUri")


def deploy_bundle(bundle_uri: str, config: DeployConfig, client: Any = None) -> DeployResult:
    """Deploy a serving bundle if it passes the gate, and wait until ready.

    Args:
        bundle_uri: the candidate bundle's ``gs://`` prefix (what the
            predictor's storage initializer downloads).
        config: deploy and gate settings.
        client: a ``KServeClient``; ``None`` makes one with :func:`make_client`
            (not used in a dry run).

    Returns:
        The decision, the object sent and whether it became ready.

    Raises:
        DeployTimeoutError: if the InferenceService is not ready for the new
            generation within ``config.ready_timeout_s``.
        RuntimeError: on a Kubernetes API error.
    """
    started = time.perf_counter()
    candidate = read_bundle_cards(bundle_uri)
    logger.info("deploying bundle %s (version %s) as %s/%s", bundle_uri,
                candidate.model_version, config.namespace, config.name)

    if config.dry_run:
        gate = evaluate_gate(candidate, None, config)
        body = build_inference_service(config, bundle_uri, candidate.model_version, False)
        return DeployResult("dry_run", candidate.model_version, bundle_uri, None, gate,
                            inference_service=to_json(body),
                            seconds=time.perf_counter() - started)

    client = client or make_client()
    current = get_inference_service(client, config.name, config.namespace)
    deployed_version = None
    deployed_cards: BundleCards | None = None
    if current is not None:
        deployed_version = current.get("metadata", {}).get("annotations", {}).get(
            MODEL_VERSION_ANNOTATION)
        deployed_uri = deployed_storage_uri(current)
        if deployed_version == candidate.model_version and deployed_uri == bundle_uri:
            gate = GateResult(passed=False, reasons=[
                f"version {deployed_version} from {bundle_uri} is already deployed"])
            logger.info("skipping deploy: %s", gate.reasons[0])
            return DeployResult("skipped", candidate.model_version, bundle_uri,
                                deployed_version, gate, ready=True,
                                seconds=time.perf_counter() - started)
        deployed_cards = _read_deployed_cards(deployed_uri, deployed_version)

    if current is not None and deployed_cards is None:
        reason = (f"the model cards of the deployed bundle {deployed_storage_uri(current)!r} "
                  "could not be read, so the candidate cannot be compared")
        gate = GateResult(passed=False, reasons=[reason])
    else:
        gate = evaluate_gate(candidate, deployed_cards, config)
    if not gate.passed and not config.force:
        return DeployResult("skipped", candidate.model_version, bundle_uri, deployed_version,
                            gate, seconds=time.perf_counter() - started)
    if not gate.passed:
        logger.warning("gate failed but force is set; deploying %s anyway: %s",
                       candidate.model_version, " | ".join(gate.reasons))

    body = build_inference_service(config, bundle_uri, candidate.model_version,
                                   canary=current is not None)
    if current is None:
        response = client.create(body, namespace=config.namespace)
        action = "created"
    else:
        response = client.patch(config.name, body, namespace=config.namespace)
        action = "patched"
    generation = int(response.get("metadata", {}).get("generation") or 0) or None
    logger.info("%s InferenceService %s/%s with version %s (generation %s)", action,
                config.namespace, config.name, candidate.model_version, generation)

    wait_until_ready(client, config, generation)
    return DeployResult(action, candidate.model_version, bundle_uri, deployed_version, gate,
                        ready=True, inference_service=to_json(body),
                        seconds=time.perf_counter() - started)


def _read_deployed_cards(uri: str | None, version: str | None) -> BundleCards | None:
    if not uri:
        logger.error("the deployed InferenceService (version %s) has no STORAGE_URI", version)
        return None
    try:
        return read_bundle_cards(uri)
    except (OSError, ValueError) as error:
        # FileNotFoundError is an OSError; a bad bundle.json is a ValueError.
        logger.error("cannot read the model cards of the deployed bundle %s (version %s): %s",
                     uri, version, error)
        return None


def wait_until_ready(client: Any, config: DeployConfig, generation: int | None) -> None:
    """Poll until the InferenceService is ready at ``generation`` or later.

    Raises:
        DeployTimeoutError: after ``config.ready_timeout_s`` seconds, with the
            last reported conditions.
    """
    deadline = time.monotonic() + config.ready_timeout_s
    polls = 0
    while True:
        polls += 1
        if client.is_isvc_ready(config.name, namespace=config.namespace,
                                expected_generation=generation):
            logger.info("InferenceService %s/%s is ready (generation %s) after %d polls",
                        config.namespace, config.name, generation, polls)
            return
        if time.monotonic() + config.poll_interval_s > deadline:
            break
        time.sleep(config.poll_interval_s)
    status = (get_inference_service(client, config.name, config.namespace) or {}).get(
        "status", {})
    raise DeployTimeoutError(
        f"InferenceService {config.namespace}/{config.name} was not ready for generation "
        f"{generation} after {config.ready_timeout_s:.0f} s; conditions: "
        f"{status.get('conditions')}. Check the predictor pod's log for the bundle error."
    )


def promote_canary(config: DeployConfig, client: Any = None) -> dict[str, Any]:
    """Send all traffic to the latest revision (``canaryTrafficPercent: 100``).

    Returns:
        The patched InferenceService.
    """
    client = client or make_client()
    current = get_inference_service(client, config.name, config.namespace)
    if current is None:
        raise ValueError(f"InferenceService {config.namespace}/{config.name} does not "
                         "exist; deploy a bundle first")
    from gfm.serving.kserve_import import kserve

    body = kserve.V1beta1InferenceService(
        api_version=API_VERSION, kind="InferenceService",
        spec=kserve.V1beta1InferenceServiceSpec(
            predictor=kserve.V1beta1PredictorSpec(canary_traffic_percent=100)),
    )
    response = client.patch(config.name, body, namespace=config.namespace)
    logger.info("promoted InferenceService %s/%s: 100%% of traffic to the latest revision",
                config.namespace, config.name)
    return response
