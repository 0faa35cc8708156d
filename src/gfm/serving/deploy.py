"""Create or update the recommender's InferenceService through KServe's SDK.

:func:`deploy_bundle` reads the candidate bundle's model cards, looks up the
InferenceService in the cluster and runs the gate of :mod:`gfm.serving.gate`
against the bundle it serves. The deployed bundle counts as the baseline
only if its ``model_version`` equals the InferenceService's
``gfm.dev/model-version`` annotation; otherwise the files at its
``STORAGE_URI`` were replaced after the rollout, and the gate fails. Only if
the gate passes does it copy the bundle to its versioned path (with
``bundle_root``) and create the InferenceService or patch it to the new
``STORAGE_URI``. It then waits until KServe reports the InferenceService
ready for the new generation.

NOTE: no cluster runs in this repository's tests. They check every decision
and the exact object sent through ``KServeClient`` against a fake Kubernetes
custom-objects API; the apply itself against a real KServe is untested here.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from gfm import settings, storage
from gfm.serving.deploy_config import DeployConfig
from gfm.serving.gate import (
    BUNDLE_FILE,
    BundleCards,
    GateResult,
    evaluate_gate,
    read_bundle_cards,
)

logger = logging.getLogger(__name__)

API_VERSION = "serving.kserve.io/v1beta1"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
MODEL_VERSION_ANNOTATION = "gfm.dev/model-version"
CONTAINER_NAME = "kserve-container"
PORT = 8080

# A model_version becomes one path segment below DeployConfig.bundle_root.
VERSION_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class DeployTimeoutError(TimeoutError):
    """The InferenceService did not become ready in time."""


@dataclass
class DeployResult:
    """Decision and outcome of one :func:`deploy_bundle` call.

    Args:
        action: ``created``, ``patched``, ``skipped`` (gate failed or the
            version is already deployed) or ``dry_run``.
        model_version: the candidate bundle's version.
        storage_uri: the ``STORAGE_URI`` the candidate is (or would be)
            served from: ``<bundle_root>/<model_version>`` with
            ``bundle_root``, else the candidate's own URI.
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

    A dry run reads the InferenceService and runs the same gate as a real
    run, but copies and sends nothing. Without a Kubernetes configuration it
    compares with no deployed model and records that in ``gate.notes``.

    Args:
        bundle_uri: the candidate bundle's ``gs://`` prefix (what the
            predictor's storage initializer downloads).
        config: deploy and gate settings.
        client: a ``KServeClient``; ``None`` makes one with :func:`make_client`.

    Returns:
        The decision, the object sent and whether it became ready.

    Raises:
        DeployTimeoutError: if the InferenceService is not ready for the new
            generation within ``config.ready_timeout_s``.
        RuntimeError: on a Kubernetes API error.
        ValueError: if the candidate's cards are malformed, or its versioned
            path below ``bundle_root`` already contains another bundle.
    """
    started = time.perf_counter()
    candidate = read_bundle_cards(bundle_uri)
    storage_uri = serving_uri(bundle_uri, candidate.model_version, config)
    logger.info("deploying bundle %s (version %s, served from %s) as %s/%s", bundle_uri,
                candidate.model_version, storage_uri, config.namespace, config.name)

    notes: list[str] = []
    if client is None:
        client = _dry_run_client(notes) if config.dry_run else make_client()
    current = None
    if client is not None:
        current = get_inference_service(client, config.name, config.namespace)
    deployed_version = None
    if current is not None:
        deployed_version = current.get("metadata", {}).get("annotations", {}).get(
            MODEL_VERSION_ANNOTATION)

    already_deployed = (current is not None and deployed_version == candidate.model_version
                        and deployed_storage_uri(current) == storage_uri)
    if already_deployed:
        gate = GateResult(passed=False, reasons=[
            f"version {deployed_version} from {storage_uri} is already deployed"])
        logger.info("skipping deploy: %s", gate.reasons[0])
    else:
        gate = _run_gate(candidate, current, config)
    gate.notes.extend(notes)

    if config.dry_run:
        body = build_inference_service(config, storage_uri, candidate.model_version,
                                       canary=current is not None)
        return DeployResult("dry_run", candidate.model_version, storage_uri,
                            deployed_version, gate, inference_service=to_json(body),
                            seconds=time.perf_counter() - started)
    if already_deployed:
        return DeployResult("skipped", candidate.model_version, storage_uri,
                            deployed_version, gate, ready=True,
                            seconds=time.perf_counter() - started)
    if not gate.passed and not config.force:
        return DeployResult("skipped", candidate.model_version, storage_uri, deployed_version,
                            gate, seconds=time.perf_counter() - started)
    if not gate.passed:
        logger.warning("gate failed but force is set; deploying %s anyway: %s",
                       candidate.model_version, " | ".join(gate.reasons))

    if storage_uri != str(bundle_uri):
        publish_bundle(candidate, storage_uri)
    body = build_inference_service(config, storage_uri, candidate.model_version,
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
    return DeployResult(action, candidate.model_version, storage_uri, deployed_version, gate,
                        ready=True, inference_service=to_json(body),
                        seconds=time.perf_counter() - started)


def serving_uri(bundle_uri: str, model_version: str, config: DeployConfig) -> str:
    """Return the ``STORAGE_URI`` a bundle is served from.

    Raises:
        ValueError: if ``bundle_root`` is set and ``model_version`` is not a
            single path segment of letters, digits, ``.``, ``_`` and ``-``.
    """
    if config.bundle_root is None:
        return str(bundle_uri)
    if not VERSION_SEGMENT.fullmatch(model_version):
        raise ValueError(f"model_version {model_version!r} cannot name a folder below "
                         f"bundle_root {config.bundle_root}; use letters, digits, '.', '_' "
                         "and '-', starting with a letter or digit")
    return storage.join(config.bundle_root, model_version)


def publish_bundle(candidate: BundleCards, target_uri: str) -> bool:
    """Copy the candidate bundle to its versioned path, ``bundle.json`` last.

    A versioned path is written once. A path whose ``bundle.json`` equals
    the candidate's already contains this bundle (a retried deploy step) and
    is left as it is. A path without ``bundle.json`` is the remains of an
    interrupted copy and is written over.

    Returns:
        Whether files were copied.

    Raises:
        ValueError: if ``target_uri`` contains another bundle.
        FileNotFoundError: if the candidate folder has no files.
    """
    source = candidate.uri.rstrip("/")
    manifest_uri = storage.join(target_uri, BUNDLE_FILE)
    if storage.exists(manifest_uri):
        existing = storage.read_json(manifest_uri)
        if existing == candidate.manifest:
            logger.info("%s already contains bundle %s; not copying it again", target_uri,
                        candidate.model_version)
            return False
        found = existing.get("model_version") if isinstance(existing, dict) else existing
        raise ValueError(
            f"{target_uri} already contains another bundle (model_version {found!r}, "
            f"{BUNDLE_FILE} differs from the one of {candidate.uri}); versioned bundle "
            "paths are never overwritten, so export under a new model_version")

    started = time.perf_counter()
    files = storage.list_files(source)
    if not files:
        raise FileNotFoundError(f"nothing to publish: {source} has no files")
    for file_uri in files:
        relative = file_uri[len(source):].lstrip("/")
        if relative != BUNDLE_FILE:
            storage.write_bytes(storage.join(target_uri, relative), storage.read_bytes(file_uri))
    # bundle.json goes last, so a reader never finds a partial copy complete.
    storage.write_bytes(manifest_uri, storage.read_bytes(storage.join(source, BUNDLE_FILE)))
    logger.info("copied bundle %s (%d files) from %s to %s in %.2f s",
                candidate.model_version, len(files), source, target_uri,
                time.perf_counter() - started)
    return True


def _dry_run_client(notes: list[str]) -> Any:
    from kubernetes.config import ConfigException

    try:
        return make_client()
    except ConfigException as error:
        note = (f"no Kubernetes configuration ({error}), so the dry run compared the "
                "candidate with no deployed model")
        logger.warning("%s", note)
        notes.append(note)
        return None


def _run_gate(candidate: BundleCards, current: dict[str, Any] | None,
              config: DeployConfig) -> GateResult:
    if current is None:
        return evaluate_gate(candidate, None, config)
    deployed_uri = deployed_storage_uri(current)
    deployed_version = current.get("metadata", {}).get("annotations", {}).get(
        MODEL_VERSION_ANNOTATION)
    deployed = _read_deployed_cards(deployed_uri, deployed_version)
    if deployed is None:
        reason = (f"the model cards of the deployed bundle {deployed_uri!r} could not be "
                  "read, so the candidate cannot be compared")
    elif deployed.model_version != deployed_version:
        reason = (f"the deployed bundle {deployed_uri!r} now contains model_version "
                  f"{deployed.model_version!r}, but the InferenceService's "
                  f"{MODEL_VERSION_ANNOTATION} annotation is {deployed_version!r}: the "
                  "bundle was replaced after its rollout, so the model in service "
                  "cannot be compared; serve bundles from per-version paths "
                  "(deploy.bundle_root)")
    else:
        return evaluate_gate(candidate, deployed, config)
    logger.error("gate for %s failed: %s", candidate.model_version, reason)
    return GateResult(passed=False, reasons=[reason])


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
