"""Tests of ``gfm evaluate run`` and its argument checks."""

from __future__ import annotations

import json

import pytest

from gfm.cli import main
from gfm.evaluation.cli import _json_mapping, parse_overrides


def test_evaluate_run_writes_report(tmp_path, movielens, trained_models, capsys):
    for name in ("dataset", "split", "llm", "hgnn"):
        movielens[name].save(tmp_path / name)
    trained_models["2t-hgnn"].save(tmp_path / "model")
    config = json.dumps({"baselines": ["popularity"], "num_threads": 1})

    code = main(["evaluate", "run", "--dataset", str(tmp_path / "dataset"),
                 "--split", str(tmp_path / "split"), "--llm", str(tmp_path / "llm"),
                 "--hgnn", str(tmp_path / "hgnn"), "--model", str(tmp_path / "model"),
                 "--config", config, "--out", str(tmp_path / "out")])

    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["deploy_gate"]["movies"]["model"] == "2t-hgnn"
    assert (tmp_path / "out" / "metrics.json").exists()


def test_evaluate_run_rejects_unknown_setting(tmp_path, capsys):
    code = main(["evaluate", "run", "--dataset", "d", "--split", "s", "--model", "m",
                 "--config", '{"hit_rate_k": 5}', "--out", str(tmp_path)])

    assert code == 2
    assert "hit_rate_k" in capsys.readouterr().err


def test_json_mapping_reads_inline_and_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"hit_k": 5}')

    assert _json_mapping(None) == {}
    assert _json_mapping('{"hit_k": 3}') == {"hit_k": 3}
    assert _json_mapping(f"@{path}") == {"hit_k": 5}
    with pytest.raises(ValueError, match="not JSON"):
        _json_mapping("{hit_k")
    with pytest.raises(ValueError, match="JSON object"):
        _json_mapping("[1]")


def test_overrides_parse_json_values():
    assert parse_overrides(["hgnn.max_epochs=2", "split.protocol=random"]) == {
        "hgnn.max_epochs": 2, "split.protocol": "random"}
    with pytest.raises(ValueError, match="KEY=JSON"):
        parse_overrides(["hgnn.max_epochs"])
