"""The pipeline subcommands of ``gfm``: compile, run --local, submit, schedule."""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

DEFAULT_PACKAGE = "gfm-pipeline.yaml"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``compile``, ``run``, ``submit`` and ``schedule`` to ``gfm``."""
    compile_parser = subparsers.add_parser(
        "compile", help="compile the pipeline to KFP IR YAML",
        description="Compile the pipeline to KFP IR YAML. The run settings become "
        "the parameters' defaults. Images come from GFM_IMAGE_REGISTRY and "
        "GFM_IMAGE_TAG.",
    )
    _add_run_arguments(compile_parser)
    _add_placement_arguments(compile_parser)
    compile_parser.add_argument(
        "--out", default=DEFAULT_PACKAGE,
        help=f"the IR YAML file to write (default: {DEFAULT_PACKAGE})",
    )
    compile_parser.set_defaults(func=_reporting_errors(_compile_command))

    run_parser = subparsers.add_parser(
        "run", help="run the whole pipeline on this machine (kfp.local)",
        description="Run the whole pipeline on this machine with kfp.local "
        "(SubprocessRunner in the current environment, Ray started locally).",
    )
    run_parser.add_argument(
        "--local", action="store_true", required=True,
        help="run with kfp.local (required: use 'gfm submit' for a cluster)",
    )
    _add_run_arguments(run_parser)
    run_parser.add_argument(
        "--pipeline-root", default="runs",
        help="local folder for the run's artifacts (default: ./runs)",
    )
    run_parser.add_argument(
        "--output-json", default=None,
        help="write the run folder, bundle folder and duration to this JSON file",
    )
    run_parser.set_defaults(func=_reporting_errors(_run_command))

    submit_parser = subparsers.add_parser(
        "submit", help="start one run on a KFP endpoint",
        description="Compile the pipeline with cluster placement and start a run "
        "through the KFP API.",
    )
    _add_run_arguments(submit_parser)
    _add_placement_arguments(submit_parser)
    _add_endpoint_arguments(submit_parser)
    submit_parser.add_argument(
        "--run-name", default=None,
        help="the run's display name (default: gfm-DATASET-UTC_TIMESTAMP)",
    )
    submit_parser.add_argument(
        "--no-cache", action="store_true",
        help="turn off caching for every task of this run",
    )
    submit_parser.set_defaults(func=_reporting_errors(_submit_command))

    schedule_parser = subparsers.add_parser(
        "schedule", help="create a recurring run on a KFP endpoint",
        description="Compile the pipeline with cluster placement and create a "
        "recurring run. KFP cron expressions take six fields, seconds first: "
        "'0 0 3 * * *' runs at 03:00 every day, '0 0 4 * * 0' at 04:00 on Sundays.",
    )
    _add_run_arguments(schedule_parser)
    _add_placement_arguments(schedule_parser)
    _add_endpoint_arguments(schedule_parser)
    schedule_parser.add_argument(
        "--name", required=True, help="the recurring run's display name"
    )
    schedule_parser.add_argument(
        "--cron", required=True,
        help="schedule as six cron fields, seconds first (seconds minutes hours "
        "day-of-month month day-of-week), for example '0 0 3 * * *'",
    )
    schedule_parser.add_argument(
        "--max-concurrency", type=int, default=1,
        help="how many runs of this schedule may overlap (default: 1)",
    )
    schedule_parser.add_argument(
        "--replace", action="store_true",
        help="delete recurring runs of the same name in the experiment first",
    )
    schedule_parser.set_defaults(func=_reporting_errors(_schedule_command))


def _reporting_errors(command):
    """Wrap a command so invalid settings exit with code 2 and one log line."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (ValueError, FileNotFoundError) as error:
            logger.error("gfm %s failed: %s", args.command, error)
            return 2

    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    return run


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default="movielens-1m",
        help="run settings: a shipped name (movielens-1m, lastfm-2k) or a YAML "
        "file (default: movielens-1m)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="replace one setting, SECTION.KEY=VALUE with VALUE parsed as YAML, "
        "for example --set hgnn.max_epochs=2 (repeatable)",
    )
    parser.add_argument(
        "--reuse-foundation", action="store_true",
        help="import the LLM and HGNN embeddings published at --foundation-uri "
        "and retrain only the two-tower models",
    )
    parser.add_argument(
        "--foundation-uri", default=None,
        help="the published foundation layer to import (with --reuse-foundation)",
    )
    parser.add_argument(
        "--publish-foundation-uri", default=None,
        help="where a full run publishes its LLM and HGNN embeddings for later "
        "--reuse-foundation runs",
    )


def _add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--placement", default="gke",
        help="cluster placement: 'gke' (GPU node pool), 'cpu-cluster' (kind, "
        "minikube), 'none', or a YAML file (default: gke)",
    )
    parser.add_argument(
        "--accelerator", default="nvidia-l4",
        help="GKE accelerator of the GPU node pool with --placement gke "
        "(default: nvidia-l4)",
    )
    parser.add_argument(
        "--max-parallel-products", type=int, default=4,
        help="two-tower trainings that run at once (default: 4)",
    )
    parser.add_argument(
        "--cache-ingest", action="store_true",
        help="let the ingest step hit KFP's cache; only for data that never "
        "changes under the same dataset name and URI",
    )


def _add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", required=True, help="the KFP API endpoint URL")
    parser.add_argument(
        "--namespace", default=None,
        help="the profile namespace in a multi-user deployment",
    )
    parser.add_argument(
        "--token-file", default=None,
        help="a file containing a bearer token for the KFP API",
    )
    parser.add_argument(
        "--experiment", default="gfm", help="the experiment (default: gfm)"
    )
    parser.add_argument(
        "--pipeline-root", default=None,
        help="where the runs' artifacts go, for example gs://BUCKET/pipeline-root",
    )
    parser.add_argument(
        "--service-account", default="gfm-pipeline",
        help="Kubernetes service account of the run's pods (default: gfm-pipeline)",
    )


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid --set {pair!r}: use SECTION.KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def _load_settings(args: argparse.Namespace):
    from gfm.pipelines.run_config import load_run_config

    run_config = load_run_config(args.config)
    if args.overrides:
        run_config = run_config.with_overrides(_parse_overrides(args.overrides))
    run_config.validate()
    return run_config


def _arguments(args: argparse.Namespace, run_config) -> dict[str, Any]:
    from gfm.pipelines.compile import pipeline_arguments

    return pipeline_arguments(
        run_config,
        reuse_foundation=args.reuse_foundation,
        foundation_uri=args.foundation_uri,
        publish_foundation_uri=args.publish_foundation_uri,
    )


def _placement(args: argparse.Namespace, run_config):
    from gfm.pipelines.placement import (
        gke_placement,
        hgnn_trains_in_step,
        load_placement,
    )

    if args.placement == "none":
        return None
    if args.placement == "gke":
        return gke_placement(
            args.accelerator, hgnn_gpu=hgnn_trains_in_step(run_config.hgnn)
        )
    return load_placement(args.placement)


def _compile(args: argparse.Namespace, out: str | Path) -> tuple[Path, dict[str, Any]]:
    from gfm.pipelines.compile import compile_pipeline

    run_config = _load_settings(args)
    arguments = _arguments(args, run_config)
    path = compile_pipeline(
        out,
        run_config=run_config,
        placement=_placement(args, run_config),
        max_parallel_products=args.max_parallel_products,
        cache_ingest=args.cache_ingest,
        arguments=arguments,
    )
    return path, arguments


def _compile_command(args: argparse.Namespace) -> int:
    path, _ = _compile(args, args.out)
    print(path)
    return 0


def _run_command(args: argparse.Namespace) -> int:
    from gfm.pipelines.local_run import run_local, summarize

    run_config = _load_settings(args)
    try:
        run = run_local(
            run_config,
            args.pipeline_root,
            reuse_foundation=args.reuse_foundation,
            foundation_uri=args.foundation_uri,
            publish_foundation_uri=args.publish_foundation_uri,
        )
    except RuntimeError:
        # run_local has logged which task failed; kfp.local printed its log.
        return 1
    print(summarize(run))
    if args.output_json:
        document = {
            "run_dir": str(run.run_dir),
            "bundle_dir": str(run.bundle_dir),
            "seconds": round(run.seconds, 1),
            "outputs": {key: str(path) for key, path in run.outputs.items()},
        }
        Path(args.output_json).write_text(
            json.dumps(document, indent=2) + "\n", encoding="utf-8"
        )
    return 0


def _client(args: argparse.Namespace):
    from gfm.pipelines.remote import kfp_client

    token = None
    if args.token_file:
        token = Path(args.token_file).read_text(encoding="utf-8").strip()
    return kfp_client(args.host, namespace=args.namespace, token=token)


def _submit_command(args: argparse.Namespace) -> int:
    from gfm.pipelines.remote import submit_run

    with tempfile.TemporaryDirectory(prefix="gfm-compile-") as folder:
        path, arguments = _compile(args, Path(folder) / DEFAULT_PACKAGE)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_id = submit_run(
            _client(args),
            path,
            arguments=arguments,
            run_name=args.run_name or f"gfm-{arguments['dataset_name']}-{stamp}",
            experiment=args.experiment,
            pipeline_root=args.pipeline_root,
            service_account=args.service_account,
            namespace=args.namespace,
            enable_caching=False if args.no_cache else None,
        )
    print(run_id)
    return 0


def _schedule_command(args: argparse.Namespace) -> int:
    from gfm.pipelines.remote import check_cron, schedule_run

    check_cron(args.cron)
    with tempfile.TemporaryDirectory(prefix="gfm-compile-") as folder:
        path, arguments = _compile(args, Path(folder) / DEFAULT_PACKAGE)
        recurring_run_id = schedule_run(
            _client(args),
            path,
            name=args.name,
            cron=args.cron,
            arguments=arguments,
            experiment=args.experiment,
            pipeline_root=args.pipeline_root,
            service_account=args.service_account,
            namespace=args.namespace,
            max_concurrency=args.max_concurrency,
            replace=args.replace,
        )
    print(recurring_run_id)
    return 0
