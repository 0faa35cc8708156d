"""Tests of the comparison report: aggregation, gate, Markdown and files."""

from __future__ import annotations

import json
import math

from gfm import storage
import numpy as np
import pytest

from gfm.evaluation.report import (
    aggregate_seeds,
    deploy_gate,
    excluded_item_notes,
    json_ready,
    to_markdown,
    write_report,
)


def _row(model, slice_name, hr, seed, users=10, product="movie"):
    return {"protocol": "ml-temporal", "product": product, "model": model,
            "slice": slice_name, "view": "full", "num_users": users, "seed": seed,
            "hr@10": hr, "mrr": hr / 2}


def test_aggregate_seeds_mean_and_sample_std():
    rows = [_row("ease", "warm", 0.2, 0), _row("ease", "warm", 0.4, 1),
            _row("ease", "warm", 0.3, 2), _row("popularity", "warm", 0.1, 0)]
    aggregated = aggregate_seeds(rows)

    assert len(aggregated) == 2
    ease = aggregated[0]
    assert ease["model"] == "ease"
    assert ease["num_seeds"] == 3
    assert math.isclose(ease["hr@10"], 0.3)
    assert math.isclose(ease["hr@10_std"], 0.1)
    assert math.isclose(ease["mrr"], 0.15)
    assert aggregated[1]["hr@10_std"] == 0.0
    assert "seed" not in ease


def test_aggregate_seeds_ignores_nan_figures():
    rows = [_row("ease", "new_users", float("nan"), 0, users=0),
            _row("ease", "new_users", 0.5, 1, users=2)]
    aggregated = aggregate_seeds(rows)[0]

    assert aggregated["hr@10"] == 0.5
    assert aggregated["num_users"] == 1.0


def test_deploy_gate_takes_warm_hr_of_2t_hgnn_per_product():
    rows = [_row("2t-hgnn", "warm", 0.35, 0), _row("2t-hgnn", "all", 0.3, 0),
            _row("ease", "warm", 0.4, 0), _row("2t-hgnn", "warm", 0.2, 0, product="tag")]
    gate = deploy_gate(rows)

    assert set(gate) == {"movie", "tag"}
    assert gate["movie"]["value"] == 0.35
    assert gate["movie"]["num_users"] == 10
    assert gate["tag"]["metric"] == "hr@10"


def test_deploy_gate_nan_value_is_none():
    gate = deploy_gate([_row("2t-hgnn", "warm", float("nan"), 0, users=0)])

    assert gate["movie"]["value"] is None
    assert gate["movie"]["num_users"] == 0


def test_deploy_gate_uses_rows_hit_rate():
    row = {"product": "movie", "model": "2t-hgnn", "slice": "warm", "view": "full",
           "num_users": 4, "hr@5": 0.25, "mrr": 0.1}
    gate = deploy_gate([row])

    assert gate["movie"]["metric"] == "hr@5"
    assert gate["movie"]["value"] == 0.25


def test_deploy_gate_metric_per_row():
    # Protocols evaluated with different hit_k keep their own gate metric.
    rows = [{"product": "movie", "model": "2t-hgnn", "slice": "warm", "view": "full",
             "num_users": 4, "hr@5": 0.25},
            {"product": "tag", "model": "2t-hgnn", "slice": "warm", "view": "full",
             "num_users": 2, "hr@10": 0.5}]
    gate = deploy_gate(rows)

    assert gate["movie"]["metric"] == "hr@5"
    assert gate["tag"]["metric"] == "hr@10"
    assert deploy_gate(rows, metric="hr@10") == {"tag": gate["tag"]}


def test_json_ready_replaces_nan_everywhere():
    value = {"a": [1.0, float("nan"), {"b": np.float32("inf")}], "c": (np.float64(2.5),),
             "d": "NaN", "e": 3}

    assert json_ready(value) == {"a": [1.0, None, {"b": None}], "c": [2.5], "d": "NaN",
                                 "e": 3}


def test_excluded_item_notes_describe_cap():
    counts = {"max_items": 2, "items_with_history": 5, "items_beyond_max_items": 3,
              "test_positives_beyond_max_items": 1, "test_positives": 4}
    notes = excluded_item_notes({"product artists": {"excluded_items": {"ease": counts}},
                                 "product tags": {"excluded_items": {}}})

    assert notes == ["ease on product artists: keeps the 2 most popular of 5 items with "
                     "history; the other 3 rank below every kept item, and 1 of 4 test "
                     "positives (25.0%) are on them."]
    assert excluded_item_notes({"p": {"excluded_items": {
        "ease": dict(counts, items_beyond_max_items=0)}}}) == []


def test_to_markdown_shows_mean_std_and_users():
    rows = aggregate_seeds([_row("ease", "warm", 0.2, 0), _row("ease", "warm", 0.4, 1)])
    text = to_markdown(rows, {"warm": "users with history in this product"})

    assert "## ml-temporal: movie, slice `warm`" in text
    assert "Users with history in this product." in text
    assert "| ease | 10 | 0.3000 ± 0.1414 |" in text


def test_write_report_writes_three_files(tmp_path):
    rows = [_row("2t-hgnn", "warm", 0.35, 0), _row("2t-hgnn", "new_users", float("nan"), 0, users=0)]
    document = write_report(tmp_path, rows, extra={"config": {"hit_k": 10}})

    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["deploy_gate"]["movie"]["value"] == 0.35
    assert written["rows"][1]["hr@10"] is None
    assert written["config"] == {"hit_k": 10}
    assert document["metrics"] == ["hr@10", "mrr"]
    assert "n/a" in (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert page.startswith("<!DOCTYPE html>")


def test_write_report_strict_json_and_notes(tmp_path):
    rows = [_row("2t-hgnn", "warm", float("nan"), 0, users=0)]
    extra = {"counts": {"movie": {"ratio": float("nan"), "infinite": float("inf")}},
             "timings": {"movie": {"ease": {"fit_s": np.float32("nan")}}}}
    document = write_report(tmp_path, rows, extra=extra, notes=["ease is capped."])

    def reject(constant):
        raise ValueError(f"{constant} is not JSON")

    written = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=reject)
    assert written["deploy_gate"]["movie"]["value"] is None
    assert written["counts"]["movie"] == {"ratio": None, "infinite": None}
    assert written["timings"]["movie"]["ease"]["fit_s"] is None
    assert document["deploy_gate"]["movie"]["value"] is None
    assert (tmp_path / "report.md").read_text().endswith("## Notes\n\n- ease is capped.\n")


def test_write_report_to_gcs(gcs_emulator):
    bucket = gcs_emulator.create_bucket("gfm-evaluation-report")
    write_report(f"{bucket}/run-1", [_row("2t-hgnn", "warm", 0.35, 0)])

    assert storage.read_json(f"{bucket}/run-1/metrics.json")["deploy_gate"]["movie"]["value"] == 0.35
    assert storage.exists(f"{bucket}/run-1/report.html")
