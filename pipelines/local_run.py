"""Run the whole pipeline on this machine through ``kfp.local``.

``kfp.local.SubprocessRunner(use_venv=False)`` runs every component as a
subprocess of the current Python environment, so the environment must hold
every stage's dependencies (``pip install 'gfm[dev]'``). Outputs land under
``<pipeline_root>/<pipeline name>-<timestamp>/<task>/<output>``. The HGNN
step starts its own local Ray cluster; the variables set here make it bind
127.0.0.1 and skip Ray's token authentication.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gfm.pipelines.compile import encode_settings, pipeline_arguments
from gfm.pipelines.foundation import read_foundation_manifest
from gfm.pipelines.pipeline import PIPELINE_NAME, build_pipeline
from gfm.pipelines.run_config import RunConfig

logger = logging.getLogger(__name__)

# Environment of every component subprocess in a local run.
LOCAL_ENVIRONMENT = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "VLLM_HOST_IP": "127.0.0.1",
    "HF_HUB_OFFLINE": "1",
}


@dataclass
class LocalRun:
    """The outcome of one local run.

    Args:
        run_dir: the run's folder below the pipeline root.
        seconds: wall time of the run.
        outputs: output artifact folders by ``<task>/<output>``, relative to
            ``run_dir``, for example ``export-bundle/bundle``.
        metadata: the metadata each task wrote on its output artifacts, by
            ``<task>/<output>``.
        task_seconds: wall time of each task that ran, in seconds, in the
            order the tasks finished.
    """

    run_dir: Path
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_seconds: dict[str, float] = field(default_factory=dict)

    def output(self, task: str, name: str) -> Path:
        """Return the folder of one output artifact.

        Task names repeat with a ``-2`` suffix when the same component sits
        in both branches of the pipeline; either spelling finds it.

        Raises:
            KeyError: naming the outputs there are, if none matches.
        """
        for key, path in self.outputs.items():
            key_task, _, key_name = key.rpartition("/")
            task_name = key_task.rsplit("/", 1)[-1]
            base = task_name.rsplit("-", 1)[0] if task_name[-1:].isdigit() else task_name
            if key_name == name and task in (task_name, base):
                return path
        raise KeyError(
            f"no output {name!r} of task {task!r} in {self.run_dir}; outputs are "
            f"{sorted(self.outputs)}"
        )

    @property
    def bundle_dir(self) -> Path:
        """The serving bundle folder the run exported."""
        return self.output("export-bundle", "bundle")


_ANSI_COLOR = re.compile(r"\x1b\[[0-9;]*m")
_TASK_START = re.compile(r"^Executing task '(?P<task>[^']+)'")
_TASK_END = re.compile(r"^Task '(?P<task>[^']+)' finished with status (?P<status>\w+)")


class _TaskTimer(logging.Filter):
    """Times each task from the start and end lines kfp.local logs.

    kfp.local (2.17) reports tasks only through records logged on the root
    logger, and it replaces the root logger's handlers while a pipeline
    runs. A filter on the root logger stays in place and sees those
    records, so this one reads them, lets every record through, and logs
    each task's duration under the ``gfm`` logger.
    """

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = _ANSI_COLOR.sub("", record.getMessage())
        start = _TASK_START.match(message)
        end = _TASK_END.match(message)
        if start:
            self.started[start["task"]] = record.created
        elif end and end["task"] in self.started:
            task = end["task"]
            self.seconds[task] = record.created - self.started.pop(task)
            logger.info("task %s finished with status %s in %.1f s",
                        task, end["status"], self.seconds[task])
        return True


def run_local(
    run_config: RunConfig,
    pipeline_root: str | os.PathLike,
    *,
    reuse_foundation: bool = False,
    foundation_uri: str | None = None,
    publish_foundation_uri: str | None = None,
    arguments: dict[str, Any] | None = None,
) -> LocalRun:
    """Run the pipeline once with ``kfp.local`` and collect its outputs.

    Args:
        run_config: the run settings.
        pipeline_root: the local folder that receives every run's outputs.
        reuse_foundation: import a published foundation layer instead of
            featurizing and training the HGNN.
        foundation_uri: the published foundation layer, with
            ``reuse_foundation``.
        publish_foundation_uri: where to publish this run's foundation
            layer (a full run only).
        arguments: pipeline arguments that replace those from the settings.

    Returns:
        The run's folder, duration and output artifacts.

    Raises:
        RuntimeError: if a task fails (kfp.local logs which one).
        FileNotFoundError: if ``foundation_uri`` contains no published layer.
    """
    from kfp import local

    run_config.validate()
    if reuse_foundation and foundation_uri:
        manifest = read_foundation_manifest(foundation_uri)
        logger.info(
            "reusing the foundation layer of run %s (published %s, %d items)",
            manifest.get("run_name"), manifest.get("published_at"),
            manifest.get("num_items", -1),
        )
    values = pipeline_arguments(
        run_config,
        reuse_foundation=reuse_foundation,
        foundation_uri=foundation_uri,
        publish_foundation_uri=publish_foundation_uri,
    )
    values.update(encode_settings(arguments or {}))

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.glob(f"{PIPELINE_NAME}-*"))
    for name, value in LOCAL_ENVIRONMENT.items():
        os.environ.setdefault(name, value)

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        raise_on_error=True,
    )
    pipeline = build_pipeline(placement=None)
    logger.info(
        "local run of %s started: dataset %s, products %s, reuse_foundation=%s, "
        "pipeline_root %s",
        PIPELINE_NAME, values["dataset_name"],
        [p["product"] for p in values["products"]], reuse_foundation, root,
    )
    timer = _TaskTimer()
    logging.getLogger().addFilter(timer)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # kfp.local warns once per task that its gfm-* base image is not
            # a Python image. A local run replaces every image with the
            # current environment by design.
            warnings.filterwarnings(
                "ignore", message=".*custom or non-Python base image", category=RuntimeWarning
            )
            pipeline(**values)
    except Exception as error:
        logger.error(
            "local run of %s failed after %.1f s: %s",
            PIPELINE_NAME, time.perf_counter() - start, error,
        )
        raise RuntimeError(f"local pipeline run failed: {error}") from error
    finally:
        logging.getLogger().removeFilter(timer)
    seconds = time.perf_counter() - start

    created = sorted(set(root.glob(f"{PIPELINE_NAME}-*")) - before)
    if not created:
        raise RuntimeError(f"the local run wrote no run folder below {root}")
    run = collect_outputs(created[-1], seconds)
    run.task_seconds = dict(timer.seconds)
    logger.info(
        "local run of %s finished in %.1f s: %d output artifacts in %s",
        PIPELINE_NAME, seconds, len(run.outputs), run.run_dir,
    )
    return run


def collect_outputs(run_dir: Path, seconds: float = 0.0) -> LocalRun:
    """Read every task's ``executor_output.json`` below a local run folder."""
    run = LocalRun(run_dir=run_dir, seconds=seconds)
    for output_file in sorted(run_dir.rglob("executor_output.json")):
        task_dir = output_file.parent
        task_key = str(task_dir.relative_to(run_dir))
        document = json.loads(output_file.read_text(encoding="utf-8"))
        for name, entry in document.get("artifacts", {}).items():
            for artifact in entry.get("artifacts", []):
                key = f"{task_key}/{name}"
                run.outputs[key] = Path(artifact["uri"])
                run.metadata[key] = artifact.get("metadata", {})
    return run


def summarize(run: LocalRun) -> str:
    """Return a plain-text table of the run's outputs and their key counts."""
    lines = [f"run folder: {run.run_dir}", f"wall time: {run.seconds:.1f} s"]
    if run.task_seconds:
        lines.append("task wall times:")
        lines.extend(f"  {task}: {value:.1f} s" for task, value in run.task_seconds.items())
    lines.append("outputs:")
    for key in sorted(run.outputs):
        counts = {
            name: value for name, value in run.metadata[key].items()
            if isinstance(value, (int, float, str)) and not name.startswith("_")
        }
        text = ", ".join(f"{name}={value}" for name, value in sorted(counts.items()))
        lines.append(f"  {key}: {text}" if text else f"  {key}")
    return "\n".join(lines)
