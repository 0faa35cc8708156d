"""How many torch threads training should use inside a container.

torch starts one OpenMP thread per CPU in the process's affinity mask. A
Kubernetes CPU limit is a CFS quota, not an affinity mask, so on a 32-core
node a pod limited to 4 CPUs still gets 32 threads, which the quota then
throttles. Spinning OpenMP threads on an oversubscribed CPU slow small
matrix products many times over (``docs/benchmarks/twotower.md`` has a
measurement), so training caps its threads at the quota.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """Return the CPU quota of this process's cgroup in CPUs, or ``None`` if unlimited.

    Reads ``cpu.max`` (cgroup v2) or ``cpu/cpu.cfs_quota_us`` and
    ``cpu/cpu.cfs_period_us`` (cgroup v1) below ``root``.
    """
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, _, period = v2.read_text().strip().partition(" ")
            if quota == "max":
                return None
            return int(quota) / int(period or 100000)
        v1 = root / "cpu" / "cpu.cfs_quota_us"
        if v1.is_file():
            quota = int(v1.read_text().strip())
            if quota <= 0:
                return None
            return quota / int((root / "cpu" / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError) as error:
        logger.warning("could not read the cgroup CPU quota below %s: %s", root, error)
    return None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Return the CPUs this process may use: its affinity mask, capped by the cgroup quota.

    A fractional quota rounds down, and the result is at least 1.
    """
    if hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        count = min(count, max(1, math.floor(limit)))
    return max(1, count)
