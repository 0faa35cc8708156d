"""Tests of the Ray worker setup hook that drops Ray Train's poll warning."""

from __future__ import annotations

import logging
import subprocess
import sys

from ray import cloudpickle

from gfm.hgnn.distributed import (
    PLACEMENT_GROUP_CLEANER_LOGGER,
    STATE_API_POLL_WARNING,
    placement_group_cleaner_log_hook,
)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_cleaner_hook_drops_only_poll_warning():
    cleaner_logger = logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER)
    filters_before = list(cleaner_logger.filters)
    records = _Records()
    cleaner_logger.addHandler(records)
    try:
        placement_group_cleaner_log_hook()()
        cleaner_logger.warning(
            "%s. State API may be temporarily unavailable.", STATE_API_POLL_WARNING
        )
        cleaner_logger.warning("Failed to clean up placement group: timed out")
    finally:
        cleaner_logger.removeHandler(records)
        cleaner_logger.filters[:] = filters_before
    assert records.messages == ["Failed to clean up placement group: timed out"]


def test_cleaner_hook_runs_without_importing_gfm():
    # Ray sends a callable setup hook to each worker process with cloudpickle.
    payload = cloudpickle.dumps(placement_group_cleaner_log_hook())
    script = (
        "import logging, pickle, sys\n"
        "hook = pickle.loads(sys.stdin.buffer.read())\n"
        "hook()\n"
        f"print(len(logging.getLogger({PLACEMENT_GROUP_CLEANER_LOGGER!r}).filters))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gfm', 'torch')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=payload,
        capture_output=True,
        check=True,
        timeout=120,
    )
    filters, imported = done.stdout.decode().splitlines()
    assert filters == "1"
    assert imported == "[]"
