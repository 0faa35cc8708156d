"""Tests of gfm.pipelines.local_run's output collection and the run command."""

import json
import logging

import pytest

from gfm.cli import main
from gfm.pipelines.local_run import _TaskTimer, collect_outputs, summarize


def _task_output(run_dir, task, name, metadata):
    folder = run_dir / task
    folder.mkdir(parents=True)
    (folder / name).mkdir()
    document = {"artifacts": {name: {"artifacts": [
        {"name": name, "uri": str(folder / name), "metadata": metadata}
    ]}}}
    (folder / "executor_output.json").write_text(json.dumps(document), encoding="utf-8")


def test_collect_outputs_reads_nested_tasks(tmp_path):
    run_dir = tmp_path / "gfm-2t-hgnn-2026"
    _task_output(run_dir, "ingest", "dataset", {"items": 10.0, "name": "x"})
    _task_output(run_dir, "export-bundle-2", "bundle", {"products": ["movies"]})
    _task_output(run_dir, "for-loop-1-iteration-0/train-two-tower-2", "model", {})

    run = collect_outputs(run_dir, seconds=3.0)

    assert sorted(run.outputs) == [
        "export-bundle-2/bundle", "for-loop-1-iteration-0/train-two-tower-2/model",
        "ingest/dataset",
    ]
    assert run.bundle_dir == run_dir / "export-bundle-2" / "bundle"
    assert run.output("train-two-tower", "model").name == "model"
    assert run.output("ingest", "dataset") == run_dir / "ingest" / "dataset"
    assert run.metadata["ingest/dataset"] == {"items": 10.0, "name": "x"}


def test_output_missing_task_lists_outputs(tmp_path):
    run_dir = tmp_path / "run"
    _task_output(run_dir, "ingest", "dataset", {})

    with pytest.raises(KeyError, match="outputs are \\['ingest/dataset'\\]"):
        collect_outputs(run_dir).output("evaluate", "metrics")


def test_summarize_lists_counts_and_skips_lists(tmp_path):
    run_dir = tmp_path / "run"
    _task_output(run_dir, "ingest", "dataset", {"items": 10.0, "types": ["movie"]})

    run = collect_outputs(run_dir, seconds=1.25)
    run.task_seconds = {"ingest": 0.75}
    text = summarize(run)

    assert "wall time: 1.2 s" in text
    assert "  ingest: 0.8 s" in text
    assert "  ingest/dataset: items=10.0" in text
    assert "types" not in text


def test_run_command_requires_local(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--config", "movielens-1m"])

    assert exit_info.value.code == 2
    assert "--local" in capsys.readouterr().err


def test_run_command_rejects_bad_override():
    assert main(["run", "--local", "--set", "hgnn.max_epoch=2"]) == 2


def test_task_timer_reads_kfp_local_records(logged):
    timer = _TaskTimer()
    start = logging.LogRecord("root", logging.INFO, __file__, 1,
                              "Executing task \x1b[96m'split'\x1b[0m", None, None)
    end = logging.LogRecord("root", logging.INFO, __file__, 2,
                            "Task \x1b[96m'split'\x1b[0m finished with status "
                            "\x1b[92mSUCCESS\x1b[0m", None, None)
    end.created = start.created + 4.5
    # A separate logger replaces the root logger that kfp.local logs on, so
    # the test can check which records the timer, as its filter, lets through.
    kfp_logger = logging.getLogger("tests.kfp_local_records")
    kfp_logger.propagate = False
    passed = logged(kfp_logger.name)
    # The timer logs each duration on the local_run module's logger.
    durations = logged("gfm.pipelines.local_run")
    kfp_logger.addFilter(timer)

    try:
        for record in (start, end, end):
            kfp_logger.handle(record)
    finally:
        kfp_logger.removeFilter(timer)

    assert passed == [start, end, end]
    assert timer.seconds == {"split": pytest.approx(4.5)}
    assert timer.started == {}
    assert [r.getMessage() for r in durations] == [
        "task split finished with status SUCCESS in 4.5 s"
    ]
