"""degree_summary and graph_summary."""

from __future__ import annotations

import numpy as np

from gfm.graph.stats import degree_summary


def test_degree_summary_buckets():
    summary = degree_summary(np.array([0, 0, 1, 2, 3, 4, 7, 8, 100]))

    assert summary["min"] == 0
    assert summary["max"] == 100
    assert summary["mean"] == round(125 / 9, 4)
    assert summary["p50"] == 3.0
    assert summary["histogram"] == {
        "0": 2,
        "1": 1,
        "2-3": 2,
        "4-7": 2,
        "8-15": 1,
        "64-127": 1,
    }


def test_degree_summary_empty():
    summary = degree_summary(np.array([], dtype=np.int64))

    assert summary["max"] == 0
    assert summary["histogram"] == {}


def test_degree_summary_no_isolated():
    summary = degree_summary(np.array([1, 1, 1]))

    assert "0" not in summary["histogram"]
    assert summary["p99"] == 1.0
