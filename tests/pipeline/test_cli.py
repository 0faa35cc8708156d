"""Tests of gfm.pipelines.cli: help text and the wiring of ``gfm run --local``."""

import json
import logging

import pytest

from gfm.cli import main
from gfm.pipelines import compile as compile_module
from gfm.pipelines import local_run
from gfm.pipelines.local_run import LocalRun


def _help_text(capsys, monkeypatch, command: str) -> str:
    # A wide terminal keeps argparse from wrapping, and so from splitting
    # "day-of-month" at its hyphens.
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_schedule_help_names_six_cron_fields(capsys, monkeypatch):
    text = _help_text(capsys, monkeypatch, "schedule")

    assert "KFP cron expressions take six fields, seconds first" in text
    assert (
        "schedule as six cron fields, seconds first (seconds minutes hours "
        "day-of-month month day-of-week)" in text
    )
    assert "'0 0 3 * * *' runs at 03:00 every day" in text
    assert "'0 0 4 * * 0' at 04:00 on Sundays" in text


def _no_compile(*args, **kwargs):
    raise AssertionError("the cron expression must be checked before compiling")


def test_schedule_rejects_five_field_cron(monkeypatch, logged):
    # The cron check comes first, so the closed port on 127.0.0.1 is never
    # contacted and nothing is compiled.
    monkeypatch.setattr(compile_module, "compile_pipeline", _no_compile)
    errors = logged("gfm.pipelines.cli")

    code = main(["schedule", "--host", "http://127.0.0.1:1", "--name", "gfm-daily",
                 "--cron", "0 3 * * *"])

    assert code == 2
    (record,) = errors
    assert record.levelno == logging.ERROR
    assert "invalid cron expression '0 3 * * *'" in record.getMessage()
    assert "becomes '0 0 3 * * *'" in record.getMessage()


class _RunLocalRecorder:
    """A replacement for ``run_local`` that records each call and returns a run."""

    def __init__(self, run_dir, error: Exception | None = None) -> None:
        self.run_dir = run_dir
        self.error = error
        self.calls: list[tuple[tuple, dict]] = []

    def __call__(self, *args, **kwargs) -> LocalRun:
        self.calls.append((args, kwargs))
        if self.error is not None:
            raise self.error
        bundle = self.run_dir / "export-bundle" / "bundle"
        return LocalRun(
            run_dir=self.run_dir,
            seconds=12.34,
            outputs={"export-bundle/bundle": bundle},
            metadata={"export-bundle/bundle": {"products": 1}},
            task_seconds={"export-bundle": 2.0},
        )


def test_run_local_passes_settings_and_flags(tmp_path, monkeypatch, capsys):
    recorder = _RunLocalRecorder(tmp_path / "root" / "gfm-2t-hgnn-1")
    monkeypatch.setattr(local_run, "run_local", recorder)
    report = tmp_path / "run.json"

    code = main([
        "run", "--local", "--config", "lastfm-2k",
        "--set", "hgnn.max_epochs=2", "--set", "deploy.dry_run=true",
        "--pipeline-root", str(tmp_path / "root"),
        "--reuse-foundation", "--foundation-uri", str(tmp_path / "foundation"),
        "--output-json", str(report),
    ])

    assert code == 0
    ((args, kwargs),) = recorder.calls
    run_config, pipeline_root = args
    assert run_config.dataset["name"] == "lastfm-2k"
    assert run_config.hgnn["max_epochs"] == 2
    assert run_config.deploy["dry_run"] is True
    assert pipeline_root == str(tmp_path / "root")
    assert kwargs == {
        "reuse_foundation": True,
        "foundation_uri": str(tmp_path / "foundation"),
        "publish_foundation_uri": None,
    }
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document == {
        "run_dir": str(recorder.run_dir),
        "bundle_dir": str(recorder.run_dir / "export-bundle" / "bundle"),
        "seconds": 12.3,
        "outputs": {"export-bundle/bundle": str(recorder.run_dir / "export-bundle" / "bundle")},
    }
    printed = capsys.readouterr().out
    assert f"run folder: {recorder.run_dir}" in printed
    assert "  export-bundle/bundle: products=1" in printed


def test_run_local_defaults(tmp_path, monkeypatch):
    recorder = _RunLocalRecorder(tmp_path / "runs" / "gfm-2t-hgnn-1")
    monkeypatch.setattr(local_run, "run_local", recorder)
    monkeypatch.chdir(tmp_path)

    code = main(["run", "--local", "--publish-foundation-uri", "runs/foundation"])

    assert code == 0
    ((args, kwargs),) = recorder.calls
    run_config, pipeline_root = args
    assert run_config.dataset["name"] == "movielens-1m"
    assert pipeline_root == "runs"
    assert kwargs == {
        "reuse_foundation": False,
        "foundation_uri": None,
        "publish_foundation_uri": "runs/foundation",
    }
    assert not (tmp_path / "run.json").exists()


def test_run_local_failed_task_exits_1(tmp_path, monkeypatch, capsys):
    recorder = _RunLocalRecorder(
        tmp_path / "gfm-2t-hgnn-1", error=RuntimeError("local pipeline run failed: split")
    )
    monkeypatch.setattr(local_run, "run_local", recorder)
    report = tmp_path / "run.json"

    code = main(["run", "--local", "--pipeline-root", str(tmp_path),
                 "--output-json", str(report)])

    assert code == 1
    assert len(recorder.calls) == 1
    assert not report.exists()
    assert "run folder" not in capsys.readouterr().out
