"""KFP component that rolls a serving bundle out to the recommender InferenceService."""

# No "from __future__ import annotations": KFP reads the artifact types
# from the live annotations of the function signature.
from kfp import dsl

from gfm import settings


@dsl.component(base_image=settings.image("serve"))
def deploy(
    bundle: dsl.Input[dsl.Model],
    config: dict,
    decision: dsl.Output[dsl.Artifact],
) -> str:
    """Create or patch the InferenceService if the bundle passes the gate.

    ``bundle.uri`` (a ``gs://`` prefix in a cluster run) becomes the
    predictor's ``STORAGE_URI``, or with ``bundle_root`` set the bundle is
    copied to ``<bundle_root>/<model_version>/`` and served from there.
    ``config`` contains ``DeployConfig`` settings (empty dict = defaults;
    ``{"dry_run": true}`` reads the InferenceService when a Kubernetes
    configuration exists, decides and writes the object, but copies and
    sends nothing). ``decision`` is a folder with ``deploy.json``: the
    action, the gate's per-product comparison and the InferenceService sent.

    Returns:
        The action: ``created``, ``patched``, ``skipped`` or ``dry_run``.
    """
    import os

    from gfm.components import decode_parameter

    from gfm import storage
    from gfm.logging_setup import configure_logging
    from gfm.serving.deploy import deploy_bundle
    from gfm.serving.deploy_config import DeployConfig

    configure_logging()
    result = deploy_bundle(bundle.uri, DeployConfig.from_dict(decode_parameter(config)))
    os.makedirs(decision.path, exist_ok=True)
    storage.write_json(os.path.join(decision.path, "deploy.json"), result.to_dict())
    decision.metadata.update(
        action=result.action,
        model_version=result.model_version,
        storage_uri=result.storage_uri,
        deployed_version=result.deployed_version or "",
        gate_passed=result.gate.passed,
        gate_reasons=len(result.gate.reasons),
        gate_notes=len(result.gate.notes),
        ready=result.ready,
    )
    return result.action
