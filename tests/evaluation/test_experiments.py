"""The headline experiment runner on a seeded MovieLens-1M slice, every stage real.

Two seeds run load, split, featurize (sentence-transformers), graph, HGNN on
a local Ray cluster, both two-tower models and the evaluation. A second
call with ``resume`` reads the finished seeds back instead of training.
"""

import json
import math
import re
import tempfile

import pytest
from gfm.pipelines.run_config import load_run_config

from gfm.cli import main
from gfm.data import Dataset, load_dataset
from gfm.evaluation import experiments
from gfm.evaluation.config import EvaluationConfig
from gfm.evaluation.experiments import SEED_FILE, prepare_experiments, run_experiments

pytestmark = pytest.mark.slow

SLICE_USERS = 120
SLICE_ITEMS = 300
SEEDS = [0, 1]

SETTINGS = {
    "dataset.name": "files",
    "split.protocol": "leave_last_n",
    "split.n_test": 2,
    "split.n_valid": 1,
    "split.cold_item_fraction": 0.05,
    "featurize.engine": "sentence-transformers",
    "hgnn.max_epochs": 1,
    "hgnn.edges_per_relation": 2000,
    "hgnn.num_workers": 1,
    "twotower.max_epochs": 1,
    "twotower.num_threads": 1,
    "evaluation.baselines": ["popularity", "item-knn", "two-tower"],
}


@pytest.fixture(scope="module")
def finished(save_movielens_slice, tmp_path_factory):
    root = tmp_path_factory.mktemp("experiments")
    save_movielens_slice(root / "slice", SLICE_USERS, SLICE_ITEMS, seed=3)
    config = load_run_config("movielens-1m").with_overrides(
        dict(SETTINGS, **{"dataset.uri": str(root / "slice")}))
    config_path = root / "slice.yaml"
    config_path.write_text(json.dumps(config.to_dict()), encoding="utf-8")
    # Ray's Unix socket paths must stay under 108 bytes, which pytest's
    # temporary folders can exceed.
    ray_dir = tempfile.mkdtemp(prefix="gfm-exp-", dir="/tmp")
    overrides = {"hgnn.ray_temp_dir": ray_dir}
    document = run_experiments([str(config_path)], SEEDS, root / "work",
                               overrides=overrides)
    return root, config_path, overrides, document


def test_report_averages_every_seed(finished):
    root, _, _, document = finished
    on_disk = json.loads((root / "work" / "report" / "metrics.json").read_text())
    assert on_disk["rows"] == document["rows"]
    assert (root / "work" / "report" / "report.md").read_text().strip()

    warm = {row["model"]: row for row in document["rows"] if row["slice"] == "warm"}
    assert set(warm) == {"2t-hgnn", "two-tower", "popularity", "item-knn"}
    for row in warm.values():
        assert row["num_seeds"] == len(SEEDS)
        assert row["num_users"] > 0
        assert 0.0 <= row["hr@10"] <= 1.0
        assert math.isfinite(row["hr@10_std"])

    per_seed = [row for row in document["per_seed"]
                if row["slice"] == "warm" and row["model"] == "2t-hgnn"]
    assert sorted(row["seed"] for row in per_seed) == SEEDS
    mean = sum(row["hr@10"] for row in per_seed) / len(per_seed)
    assert warm["2t-hgnn"]["hr@10"] == pytest.approx(mean)

    assert sorted(document["stage_seconds"]) == [f"files/seed-{s}" for s in SEEDS]
    for stages in document["stage_seconds"].values():
        assert set(stages) == {"data", "featurize", "graph", "hgnn", "twotower_hgnn",
                               "twotower_llm", "evaluate"}
    assert document["resumed"] == []


def _no_training(*args, **kwargs):
    raise AssertionError("a resumed seed must not train the HGNN again")


def test_resume_reads_finished_seeds_back(finished, monkeypatch):
    root, config_path, overrides, document = finished
    monkeypatch.setattr("gfm.hgnn.train_hgnn", _no_training)
    resumed = run_experiments([str(config_path)], SEEDS, root / "work",
                              out_uri=root / "resumed", overrides=overrides,
                              resume=True)
    assert resumed["resumed"] == [f"files/seed-{s}" for s in SEEDS]
    assert resumed["rows"] == document["rows"]
    assert resumed["stage_seconds"] == document["stage_seconds"]


def _identity(root, config, seed=0, dataset=None):
    dataset = dataset or load_dataset("files", path=str(root / "slice"))
    evaluation = EvaluationConfig.from_dict(config.evaluation)
    return experiments._seed_identity(config, seed, evaluation, dataset)


def test_seed_file_reused_despite_placement_settings(finished):
    root, config_path, overrides, _ = finished
    config = load_run_config(str(config_path)).with_overrides(overrides)
    seed_file = root / "work" / "files" / "seed-0" / SEED_FILE
    moved = config.with_overrides({"hgnn.ray_temp_dir": "/tmp/elsewhere",
                                   "deploy.dry_run": False})

    assert experiments._finished_seed(seed_file, _identity(root, config), "files", 0)
    assert experiments._finished_seed(seed_file, _identity(root, moved), "files", 0)


def test_seed_file_with_other_inputs_is_not_reused(finished, caplog):
    root, config_path, overrides, _ = finished
    config = load_run_config(str(config_path)).with_overrides(overrides)
    seed_file = root / "work" / "files" / "seed-0" / SEED_FILE
    dataset = load_dataset("files", path=str(root / "slice"))
    fewer = Dataset(name=dataset.name, items=dataset.items, users=dataset.users,
                    interactions=dataset.interactions.iloc[:-10], report={})
    cases = {
        "twotower": _identity(root, config.with_overrides({"twotower.max_epochs": 2})),
        "evaluation": _identity(root, config.with_overrides({"evaluation.hit_k": 5})),
        "seed": _identity(root, config, seed=5),
        "data": _identity(root, config, dataset=fewer),
    }
    for changed, identity in cases.items():
        caplog.clear()
        assert experiments._finished_seed(seed_file, identity, "files", 0) is None
        assert f"was made with other {changed}" in caplog.text


@pytest.mark.parametrize("edit", [
    {"rows": "x"}, {"rows": []}, {"rows": [{"model": "m"}]}, {"seed": 7},
])
def test_seed_file_of_wrong_shape_is_run_again(finished, tmp_path, caplog, edit):
    root, config_path, overrides, _ = finished
    config = load_run_config(str(config_path)).with_overrides(overrides)
    saved = json.loads((root / "work" / "files" / "seed-0" / SEED_FILE).read_text())
    path = tmp_path / SEED_FILE
    path.write_text(json.dumps(dict(saved, **edit)), encoding="utf-8")

    assert experiments._finished_seed(path, _identity(root, config), "files", 0) is None
    assert "invalid" in caplog.text


@pytest.mark.parametrize("text", ["{not json", '{"identity": {}}', "[1, 2]"])
def test_invalid_seed_file_is_run_again(tmp_path, caplog, text):
    path = tmp_path / SEED_FILE
    path.write_text(text, encoding="utf-8")
    assert experiments._finished_seed(path, {}, "files", 0) is None
    assert "invalid" in caplog.text


@pytest.mark.parametrize(("configs", "seeds", "expected"), [
    ([], [0], "configs is empty"),
    (["movielens-1m"], [], "seeds is empty"),
    (["movielens-1m"], [0, 1, 0], "seeds [0] are repeated"),
    (["movielens-1m"], [-1], "seeds [-1] are invalid"),
    (["movielens-1m", "movielens-1m"], [0], "both use dataset 'movielens-1m'"),
])
def test_prepare_rejects_bad_lists(tmp_path, configs, seeds, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        prepare_experiments(configs, seeds, tmp_path)


def test_prepare_rejects_bad_folders(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="must be a local folder"):
        prepare_experiments(["movielens-1m"], [0], "gs://bucket/work")
    with pytest.raises(ValueError, match="workdir .* is a file"):
        prepare_experiments(["movielens-1m"], [0], a_file)
    with pytest.raises(ValueError, match="out .* is a file"):
        prepare_experiments(["movielens-1m"], [0], tmp_path / "work", a_file)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"dataset.name": "files"}, "needs dataset.uri"),
    ({"dataset.uri": "/data/x"}, "only read by the 'files' dataset"),
])
def test_prepare_checks_dataset_uri(tmp_path, overrides, expected):
    with pytest.raises(ValueError, match=expected):
        prepare_experiments(["movielens-1m"], [0], tmp_path, overrides=overrides)


@pytest.mark.parametrize("argv", [
    ["--configs", "no-such-settings"],
    ["--configs", "movielens-1m", "--override", "nosection.key=1"],
    ["--configs", "movielens-1m", "--seeds", "0", "0"],
])
def test_cli_rejects_bad_arguments_before_running(tmp_path, capsys, argv):
    code = main(["evaluate", "experiments", "--workdir", str(tmp_path / "work"), *argv])

    assert code == 2
    assert "gfm evaluate experiments:" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_cli_resume_writes_report(finished, monkeypatch, capsys):
    root, config_path, overrides, document = finished
    monkeypatch.setattr("gfm.hgnn.train_hgnn", _no_training)
    settings = [f"--override={key}={json.dumps(value)}" for key, value in overrides.items()]

    code = main(["evaluate", "experiments", "--configs", str(config_path),
                 "--seeds", *map(str, SEEDS), "--workdir", str(root / "work"),
                 "--out", str(root / "cli"), *settings, "--resume"])

    assert code == 0
    assert "wall_seconds" in json.loads(capsys.readouterr().out)
    written = json.loads((root / "cli" / "metrics.json").read_text())
    assert written["resumed"] == [f"files/seed-{s}" for s in SEEDS]
    assert written["rows"] == document["rows"]
