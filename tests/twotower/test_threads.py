"""Tests of the CPU count that sets training's torch threads."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gfm.twotower.threads import available_cpus, cgroup_cpu_limit


def test_cgroup_v2_quota(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")

    assert cgroup_cpu_limit(tmp_path) == 2.5
    assert available_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))


def test_cgroup_v2_unlimited(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("max 100000\n")

    assert cgroup_cpu_limit(tmp_path) is None
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_cgroup_v1_quota(tmp_path: Path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")

    assert cgroup_cpu_limit(tmp_path) == 0.5
    assert available_cpus(tmp_path) == 1


def test_cgroup_v1_unlimited(tmp_path: Path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")

    assert cgroup_cpu_limit(tmp_path) is None


def test_cgroup_unreadable_quota_means_unlimited(tmp_path: Path, caplog, monkeypatch):
    # configure_logging (run by CLI tests) stops gfm records at the gfm logger.
    monkeypatch.setattr(logging.getLogger("gfm"), "propagate", True)
    (tmp_path / "cpu.max").write_text("lots 100000\n")

    assert cgroup_cpu_limit(tmp_path) is None
    assert "could not read the cgroup CPU quota" in caplog.text


def test_no_cgroup_files(tmp_path: Path):
    assert cgroup_cpu_limit(tmp_path) is None
    assert available_cpus(tmp_path) >= 1
