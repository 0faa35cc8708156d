"""Tests of the comparison report: aggregation, gate, Markdown and files."""

from __future__ import annotations

import json
import math

from gfm import storage
from gfm.evaluation.report import aggregate_seeds, deploy_gate, to_markdown, write_report


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


def test_write_report_to_gcs(gcs_emulator):
    bucket = gcs_emulator.create_bucket("gfm-evaluation-report")
    write_report(f"{bucket}/run-1", [_row("2t-hgnn", "warm", 0.35, 0)])

    assert storage.read_json(f"{bucket}/run-1/metrics.json")["deploy_gate"]["movie"]["value"] == 0.35
    assert storage.exists(f"{bucket}/run-1/report.html")
