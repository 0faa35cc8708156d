"""Data-parallel HGNN training with Ray Train's ``TorchTrainer``.

Every worker loads the graph, computes the same seeded edge split, trains on
its own share of each epoch's edges, and DDP (gloo on CPU, NCCL on GPU)
averages the gradients. Rank 0 validates, and every epoch each worker calls
``ray.train.report``; rank 0 attaches a checkpoint (``state.pt``) every
``checkpoint_every`` epochs. When a worker dies, Ray Train restarts the
worker group up to ``max_failures`` times and every worker continues from
the latest checkpoint (``ray.train.get_checkpoint()``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from gfm import storage
from gfm.hgnn.artifacts import STATE_FILE, warm_start_weights
from gfm.hgnn.config import HGNNConfig
from gfm.hgnn.loop import LoopHooks, TrainState, train_loop

logger = logging.getLogger(__name__)

# Environment variables a worker needs from the driver: the GCS emulator and
# the logging and progress settings.
FORWARDED_ENV = (
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_CLOUD_PROJECT",
    "GFM_LOG_LEVEL",
    "GFM_NO_PROGRESS",
    "CI",
)

# Ray Train 2.60 starts a PlacementGroupCleaner actor per run that queries
# the state API about once a second (check_interval_s=1.0) for the
# controller's state. Without the dashboard there is no state API, so each
# poll logs this warning.
PLACEMENT_GROUP_CLEANER_LOGGER = (
    "ray.train.v2._internal.execution.controller.placement_group_cleaner"
)
STATE_API_POLL_WARNING = "Failed to query Ray Train Controller actor state"


def placement_group_cleaner_log_hook() -> Callable[[], None]:
    """Build a ``worker_process_setup_hook`` that drops the cleaner's poll warning.

    The hook adds a filter to the PlacementGroupCleaner's logger that drops
    records starting with :data:`STATE_API_POLL_WARNING`, so the cleaner's
    other warnings (a dead controller, a failed cleanup) still reach the
    driver. The hook is a closure, which cloudpickle sends by value, so a
    Ray worker process runs it without importing ``gfm.hgnn`` and with it
    torch and PyG.

    Returns:
        A function of no arguments for ``ray.init(runtime_env=...)``.
    """
    logger_name = PLACEMENT_GROUP_CLEANER_LOGGER
    prefix = STATE_API_POLL_WARNING

    def drop_state_api_poll_warning() -> None:
        import logging

        def keep(record: logging.LogRecord) -> bool:
            return not record.getMessage().startswith(prefix)

        logging.getLogger(logger_name).addFilter(keep)

    return drop_state_api_poll_warning


def ray_storage(storage_path: str) -> tuple[str, Any]:
    """Return the ``RunConfig`` storage path and filesystem for a location.

    A local path is made absolute. A ``gs://`` path goes to Ray as it is
    (pyarrow's GCS filesystem with default credentials), except when
    ``STORAGE_EMULATOR_HOST`` is set: then an anonymous
    ``pyarrow.fs.GcsFileSystem`` pointed at the emulator is returned with the
    path stripped of its scheme, as ``storage_filesystem`` requires.
    """
    if not storage.is_gcs(storage_path):
        return os.path.abspath(storage_path), None
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if not emulator:
        return storage_path, None
    import pyarrow.fs

    parsed = urlparse(emulator if "://" in emulator else f"http://{emulator}")
    filesystem = pyarrow.fs.GcsFileSystem(
        anonymous=True,
        scheme=parsed.scheme,
        endpoint_override=parsed.netloc,
        project_id=os.environ.get("GOOGLE_CLOUD_PROJECT", "gfm-local"),
    )
    return storage_path[len(storage.GCS_SCHEME) :], filesystem


def checkpoint_uri(checkpoint) -> str:
    """Return a Ray ``Checkpoint``'s location as a local path or ``gs://`` URI."""
    type_name = type(checkpoint.filesystem).__name__
    if type_name == "GcsFileSystem" and not checkpoint.path.startswith(
        storage.GCS_SCHEME
    ):
        return storage.GCS_SCHEME + checkpoint.path
    return checkpoint.path


def use_loopback() -> None:
    """Make a local Ray cluster bind 127.0.0.1 and skip its auth token.

    Sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which keeps every Ray
    process and the DDP rendezvous on 127.0.0.1, and
    ``RAY_AUTH_MODE=disabled``, unless they are set already. Ray reads the
    first one when it is imported, so this must run before ``import ray``.
    """
    if "ray" in sys.modules and "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ:
        logger.warning(
            "ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set, so "
            "the local Ray cluster binds this machine's network address; set it in "
            "the environment before starting Python to keep Ray on 127.0.0.1"
        )
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@contextlib.contextmanager
def ray_cluster(config: HGNNConfig) -> Iterator[None]:
    """Connect to Ray for the run, starting a local cluster when needed.

    An already initialized Ray (a caller's, or a test's shared cluster) is
    used as it is and left running. Otherwise ``ray_address=None`` starts a
    local cluster with ``num_workers * cpus_per_worker`` CPUs, bound to
    127.0.0.1 and without the dashboard, and shuts it down afterwards.
    ``ray_address="auto"`` (or an address) attaches to a running cluster.
    """
    if config.ray_address is None:
        use_loopback()
    import ray

    if ray.is_initialized():
        yield
        return
    made_temp_dir = None
    if config.ray_address is None:
        temp_dir = config.ray_temp_dir
        if temp_dir is None:
            temp_dir = made_temp_dir = tempfile.mkdtemp(prefix="gfm-ray-", dir="/tmp")
        num_cpus = config.num_workers * config.cpus_per_worker
        logger.info(
            "starting a local Ray cluster with %d CPUs in %s", num_cpus, temp_dir
        )
        # The local cluster has no dashboard, so Ray Train's cleaner actor
        # would log a warning on every poll of the missing state API.
        setup_hook = placement_group_cleaner_log_hook()
        ray.init(
            address="local",
            num_cpus=num_cpus,
            num_gpus=config.num_workers if config.use_gpu else None,
            include_dashboard=False,
            _temp_dir=temp_dir,
            runtime_env={"worker_process_setup_hook": setup_hook},
        )
    else:
        logger.info("attaching to the Ray cluster at %s", config.ray_address)
        ray.init(address=config.ray_address)
    try:
        yield
    finally:
        ray.shutdown()
        if made_temp_dir:
            shutil.rmtree(made_temp_dir, ignore_errors=True)


def _report(metrics: dict[str, Any], state: TrainState | None) -> None:
    import ray.train

    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    if state is None:
        ray.train.report(scalars)
        return
    with tempfile.TemporaryDirectory(prefix="gfm-hgnn-ckpt-") as folder:
        torch.save(state.to_dict(), Path(folder) / STATE_FILE)
        ray.train.report(
            scalars, checkpoint=ray.train.Checkpoint.from_directory(folder)
        )


def _prepare_model(model: torch.nn.Module) -> torch.nn.Module:
    import ray.train.torch

    # A batch's loss reads only its relation's node types. With several item
    # types, the other types' last-layer weights get no gradient in that
    # step, which DDP accepts only with find_unused_parameters.
    several_types = len(getattr(model, "node_types", [])) > 1
    return ray.train.torch.prepare_model(
        model, parallel_strategy_kwargs={"find_unused_parameters": several_types}
    )


def train_worker(loop_config: dict[str, Any]) -> None:
    """Run the training loop on one Ray Train worker.

    Args:
        loop_config: ``graph_uri``, ``config`` (HGNN settings as a dict) and
            ``warm_start`` (a checkpoint or model URI, or ``None``).
    """
    import ray.train
    import ray.train.torch

    from gfm.graph import load_graph
    from gfm.logging_setup import configure_logging

    configure_logging()
    config = HGNNConfig.from_dict(loop_config["config"])
    torch.set_num_threads(config.cpus_per_worker)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    data = load_graph(loop_config["graph_uri"]).data

    state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            values = torch.load(Path(folder) / STATE_FILE, weights_only=True)
        state = TrainState.from_dict(values)
        state.attempts += 1
        logger.warning(
            "rank %d restarts from the checkpoint after epoch %d (attempt %d)",
            rank,
            state.epoch,
            state.attempts,
        )
    warm_start = None
    if state is None and loop_config.get("warm_start"):
        warm_start = warm_start_weights(loop_config["warm_start"])

    hooks = LoopHooks(
        rank=rank,
        world_size=world_size,
        device=ray.train.torch.get_device(),
        wrap_model=_prepare_model,
        on_epoch_end=_report,
    )
    train_loop(data, config, state=state, warm_start=warm_start, hooks=hooks)


def check_run_folder(storage_path: str, run_name: str, *, resume_run: bool) -> None:
    """Raise unless the run folder is new or the caller asked to resume it.

    Ray Train 2.60 restores the latest checkpoint it finds under
    ``storage_path/run_name``, whatever graph or settings that run had. A
    reused name would therefore continue an older run without a word.

    Raises:
        FileExistsError: if the folder exists and ``resume_run`` is false.
    """
    run_uri = storage.join(storage_path, run_name)
    exists = storage.exists(run_uri)
    if exists and not resume_run:
        raise FileExistsError(
            f"the Ray Train run folder {run_uri} exists already, and Ray Train would "
            "continue the run it holds, possibly on another graph. Set another "
            "run_name (or null for a generated one), delete the folder, or set "
            "resume_run: true to continue that run"
        )
    if resume_run:
        logger.info(
            "resume_run: %s Ray Train run %s",
            "continuing" if exists else "no folder yet, so starting",
            run_uri,
        )


@dataclass
class RayRun:
    """The outcome of :func:`run_ray_training`.

    Args:
        state: the final :class:`TrainState` from the latest checkpoint.
        checkpoint_uri: that checkpoint's folder (local path or ``gs://``).
        run_uri: the Ray Train run folder.
    """

    state: TrainState
    checkpoint_uri: str
    run_uri: str


def run_ray_training(
    graph_uri: str,
    config: HGNNConfig,
    *,
    storage_path: str,
    run_name: str,
    warm_start: str | None = None,
) -> RayRun:
    """Train with ``config.num_workers`` Ray Train workers and return the outcome.

    Ray must be initialized (see :func:`ray_cluster`).

    Raises:
        FileExistsError: see :func:`check_run_folder`.
        ray.train.TrainingFailedError: if the workers failed more often than
            ``config.max_failures``.
        RuntimeError: if the run ended without a checkpoint.
    """
    from ray.train import (
        CheckpointConfig,
        FailureConfig,
        LoggingConfig,
        RunConfig,
        ScalingConfig,
    )
    from ray.train.torch import TorchTrainer

    check_run_folder(storage_path, run_name, resume_run=config.resume_run)
    path, filesystem = ray_storage(storage_path)
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "graph_uri": str(graph_uri),
            "config": config.to_dict(),
            "warm_start": warm_start,
        },
        # NOTE: use_gpu has not run on a GPU yet. Batches move with
        # batch.to(device) and TorchConfig picks NCCL, but only CPU runs are tested.
        scaling_config=ScalingConfig(
            num_workers=config.num_workers,
            use_gpu=config.use_gpu,
            resources_per_worker={"CPU": config.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=path,
            storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=config.keep_checkpoints),
            worker_runtime_env={"env_vars": env},
            # The loop logs one line per epoch, so Ray Train's own INFO lines
            # under the ray.train logger are left out. NOTE: Ray 2.60 logs
            # each report ("Reporting training result") through a logger
            # named after its source file, which this setting cannot reach.
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )
    logger.info(
        "Ray Train run %s: %d workers (%s), storage %s",
        run_name,
        config.num_workers,
        "GPU" if config.use_gpu else "CPU",
        storage_path,
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(
            f"Ray Train run {run_name} ended without a checkpoint; see its logs in "
            f"{storage_path}/{run_name}"
        )
    with result.checkpoint.as_directory() as folder:
        values = torch.load(Path(folder) / STATE_FILE, weights_only=True)
    uri = checkpoint_uri(result.checkpoint)
    logger.info("Ray Train run %s finished; last checkpoint %s", run_name, uri)
    return RayRun(
        state=TrainState.from_dict(values),
        checkpoint_uri=uri,
        run_uri=storage.join(storage_path, run_name),
    )
