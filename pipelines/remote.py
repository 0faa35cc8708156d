"""Submit runs and recurring runs of a compiled pipeline to a KFP endpoint.

Both go through ``kfp.Client`` (the KFP v2beta1 REST API). The run's
Kubernetes service account (``gfm-pipeline`` in ``manifests/``) is set per
run here: KFP v2 has no per-task service account.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "gfm"
DEFAULT_SERVICE_ACCOUNT = "gfm-pipeline"

# KFP's scheduler parses cron expressions with six fields, seconds first
# (robfig/cron with seconds), or a descriptor such as "@every 24h".
_CRON_FIELD = re.compile(r"^[0-9*/,?LW#A-Za-z-]+$")


def check_cron(expression: str) -> str:
    """Return ``expression`` if KFP's scheduler accepts its shape.

    Raises:
        ValueError: if it is not six fields (seconds, minutes, hours, day of
            month, month, day of week) or an ``@`` descriptor, with an
            example of each.
    """
    text = expression.strip()
    if text.startswith("@"):
        return text
    fields = text.split()
    if len(fields) != 6 or not all(_CRON_FIELD.match(f) for f in fields):
        hint = (
            f" (the five-field '{text}' becomes '0 {text}')" if len(fields) == 5 else ""
        )
        raise ValueError(
            f"invalid cron expression {expression!r}: KFP takes six fields, seconds "
            f"first, for example '0 0 3 * * *' for 03:00 every day{hint}, or a "
            "descriptor such as '@every 24h'"
        )
    return text


def kfp_client(
    host: str,
    *,
    namespace: str | None = None,
    token: str | None = None,
    ssl_ca_cert: str | None = None,
) -> Any:
    """Return a ``kfp.Client`` for ``host``.

    Args:
        host: the KFP API endpoint, for example
            ``http://ml-pipeline.kubeflow.svc.cluster.local:8888`` in the
            cluster or ``http://127.0.0.1:8080`` through ``kubectl
            port-forward``.
        namespace: the profile namespace in multi-user deployments; None
            for a single-user deployment.
        token: a bearer token; None lets ``kfp.Client`` read the projected
            service-account token in a pod (``KF_PIPELINES_SA_TOKEN_PATH``).
        ssl_ca_cert: a CA bundle file for an HTTPS endpoint.
    """
    import kfp

    kwargs: dict[str, Any] = {"host": host, "existing_token": token,
                              "ssl_ca_cert": ssl_ca_cert}
    if namespace:
        kwargs["namespace"] = namespace
    logger.info("connecting to the KFP API at %s (namespace %s)", host, namespace or "-")
    return kfp.Client(**kwargs)


def _display_name_filter(name: str) -> str:
    return json.dumps({"predicates": [
        {"key": "display_name", "operation": "EQUALS", "stringValue": name}
    ]})


def _experiment_id(client: Any, experiment: str, namespace: str | None) -> str:
    found = client.list_experiments(
        filter=_display_name_filter(experiment), namespace=namespace, page_size=2
    )
    matches = [e for e in (found.experiments or []) if e.display_name == experiment]
    if len(matches) > 1:
        raise ValueError(
            f"{len(matches)} experiments are named {experiment!r}; archive all but "
            "one or pass another experiment name"
        )
    if matches:
        return matches[0].experiment_id
    created = client.create_experiment(name=experiment, namespace=namespace)
    logger.info("created experiment %s (%s)", experiment, created.experiment_id)
    return created.experiment_id


def submit_run(
    client: Any,
    package_path: str | os.PathLike,
    *,
    arguments: dict[str, Any],
    run_name: str,
    experiment: str = DEFAULT_EXPERIMENT,
    pipeline_root: str | None = None,
    service_account: str = DEFAULT_SERVICE_ACCOUNT,
    namespace: str | None = None,
    enable_caching: bool | None = None,
) -> str:
    """Start one run of a compiled pipeline and return its run id.

    Args:
        client: a ``kfp.Client``.
        package_path: the compiled IR YAML.
        arguments: pipeline arguments (see ``pipeline_arguments``).
        run_name: the run's display name.
        experiment: the experiment to file the run under; created if absent.
        pipeline_root: where the run's artifacts go, for example
            ``gs://BUCKET/pipeline-root``; None for the deployment default.
        service_account: the Kubernetes service account of the run's pods.
        namespace: the profile namespace in multi-user deployments.
        enable_caching: override every task's caching; None keeps the
            compiled per-task settings.
    """
    experiment_id = _experiment_id(client, experiment, namespace)
    result = client.create_run_from_pipeline_package(
        pipeline_file=str(package_path),
        arguments=arguments,
        run_name=run_name,
        experiment_id=experiment_id,
        namespace=namespace,
        pipeline_root=pipeline_root,
        enable_caching=enable_caching,
        service_account=service_account,
    )
    logger.info(
        "submitted run %s (%s) to experiment %s as %s",
        run_name, result.run_id, experiment, service_account,
    )
    return result.run_id


def find_recurring_runs(client: Any, experiment_id: str, name: str) -> list[Any]:
    """Return the recurring runs of an experiment whose display name is ``name``."""
    found: list[Any] = []
    token = ""
    while True:
        page = client.list_recurring_runs(
            experiment_id=experiment_id, page_token=token, page_size=100,
            filter=_display_name_filter(name),
        )
        found.extend(r for r in (page.recurring_runs or []) if r.display_name == name)
        token = page.next_page_token or ""
        if not token:
            return found


def schedule_run(
    client: Any,
    package_path: str | os.PathLike,
    *,
    name: str,
    cron: str,
    arguments: dict[str, Any],
    experiment: str = DEFAULT_EXPERIMENT,
    pipeline_root: str | None = None,
    service_account: str = DEFAULT_SERVICE_ACCOUNT,
    namespace: str | None = None,
    max_concurrency: int = 1,
    replace: bool = False,
) -> str:
    """Create a recurring run of a compiled pipeline and return its id.

    Args:
        client: a ``kfp.Client``.
        package_path: the compiled IR YAML, sent inside the recurring run.
        name: the recurring run's display name.
        cron: six fields, seconds first (``0 0 3 * * *`` is 03:00 daily).
        arguments: pipeline arguments of every run it starts.
        experiment: the experiment to file it under; created if absent.
        pipeline_root: where its runs' artifacts go.
        service_account: the Kubernetes service account of its runs' pods.
        namespace: the profile namespace in multi-user deployments.
        max_concurrency: how many of its runs may overlap.
        replace: delete recurring runs of the same name in the experiment
            first, so installing twice keeps one schedule.

    Raises:
        ValueError: if ``cron`` is not a KFP cron expression, or a recurring
            run of that name exists and ``replace`` is false.
    """
    cron = check_cron(cron)
    experiment_id = _experiment_id(client, experiment, namespace)
    existing = find_recurring_runs(client, experiment_id, name)
    if existing and not replace:
        raise ValueError(
            f"recurring run {name!r} already exists in experiment {experiment!r} "
            f"({existing[0].recurring_run_id}); pass replace to swap it"
        )
    for old in existing:
        client.delete_recurring_run(old.recurring_run_id)
        logger.info("deleted recurring run %s (%s)", name, old.recurring_run_id)

    created = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=name,
        cron_expression=cron,
        max_concurrency=max_concurrency,
        no_catchup=True,
        params=arguments,
        pipeline_package_path=str(package_path),
        pipeline_root=pipeline_root,
        service_account=service_account,
        enabled=True,
    )
    logger.info(
        "scheduled recurring run %s (%s) with cron '%s' in experiment %s",
        name, created.recurring_run_id, cron, experiment,
    )
    return created.recurring_run_id
