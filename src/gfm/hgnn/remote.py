"""Train on a Kubernetes Ray cluster: the ``rayjob`` and ``job-submission`` launchers.

Both run ``gfm hgnn train`` inside the cluster with the settings that
differ from the defaults, then the caller reads the outputs from
``out_uri``. See :mod:`gfm.hgnn.kuberay` for the objects and the polling.
"""

from __future__ import annotations

import logging

from gfm import settings, storage
from gfm.hgnn import kuberay
from gfm.hgnn.config import HGNNConfig

logger = logging.getLogger(__name__)


def check_cluster_inputs(graph_uri: str, out_uri: str, config: HGNNConfig) -> None:
    """Check that a remote run can reach its inputs and get its GPUs.

    Raises:
        ValueError: for a local path, a missing ``cluster.address`` of the
            ``job-submission`` launcher, or more GPU workers than the
            ``RayJob`` has GPUs.
    """
    for name, uri in (("graph_uri", graph_uri), ("out_uri", out_uri)):
        if not storage.is_gcs(uri):
            raise ValueError(
                f"launcher {config.launcher!r} runs on a Ray cluster that cannot read "
                f"the local path {name}={uri!r}; pass gs:// URIs or use launcher 'local'"
            )
    cluster = config.cluster
    if config.launcher == "job-submission" and not cluster.address:
        raise ValueError(
            "launcher 'job-submission' needs cluster.address, the dashboard "
            "address of a running RayCluster (http://HOST:8265)"
        )
    gpus = cluster.worker_replicas * cluster.gpus_per_worker
    if config.launcher == "rayjob" and config.use_gpu and config.num_workers > gpus:
        raise ValueError(
            f"num_workers={config.num_workers} GPU workers need more than the {gpus} "
            f"GPUs of cluster.worker_replicas={cluster.worker_replicas} x "
            f"cluster.gpus_per_worker={cluster.gpus_per_worker}; lower num_workers or "
            "add worker replicas"
        )


def train_on_cluster(
    graph_uri: str,
    out_uri: str,
    config: HGNNConfig,
    resume_from: str | None = None,
    *,
    api=None,
    job_client=None,
) -> str:
    """Run training on a Ray cluster and wait until it ends.

    Args:
        graph_uri: ``gs://`` graph folder.
        out_uri: ``gs://`` output folder.
        config: settings; ``launcher`` is ``rayjob`` or ``job-submission``.
        resume_from: folder to warm-start from, or ``None``.
        api: Kubernetes ``CustomObjectsApi`` for ``rayjob``; ``None`` builds
            one from the in-cluster or kubeconfig credentials.
        job_client: ``JobSubmissionClient`` for ``job-submission``; ``None``
            connects to ``cluster.address``.

    Returns:
        The ``RayJob`` name or the Ray job id.

    Raises:
        ValueError: see :func:`check_cluster_inputs`.
        RayJobFailedError: if the job failed.
        TimeoutError: if it did not end within ``cluster.timeout_s``.
    """
    check_cluster_inputs(graph_uri, out_uri, config)
    cluster = config.cluster
    entrypoint = kuberay.train_entrypoint(
        graph_uri, out_uri, config.non_defaults(), resume_from
    )

    if config.launcher == "rayjob":
        body = kuberay.build_rayjob(
            kuberay.rayjob_name(cluster.name_prefix),
            entrypoint,
            cluster,
            image=cluster.image or settings.image("train"),
            use_gpu=config.use_gpu,
        )
        api = api or kuberay.custom_objects_api()
        name = kuberay.submit_rayjob(body, api)
        kuberay.wait_for_rayjob(
            name,
            cluster.namespace,
            api,
            timeout_s=cluster.timeout_s,
            poll_interval_s=cluster.poll_interval_s,
            delete_on_timeout=cluster.delete_on_timeout,
        )
        return name

    # A running cluster's containers lack cluster.env, so it travels in the
    # job's runtime environment.
    runtime_env = {"env_vars": dict(cluster.env)} if cluster.env else None
    client, job_id = kuberay.submit_ray_job(
        cluster.address, entrypoint, runtime_env=runtime_env, client=job_client
    )
    kuberay.wait_for_ray_job(
        client,
        job_id,
        timeout_s=cluster.timeout_s,
        poll_interval_s=cluster.poll_interval_s,
        stop_on_timeout=cluster.delete_on_timeout,
    )
    return job_id
