"""The whole pipeline through kfp.local on a seeded MovieLens-1M slice, then served.

One full run publishes its foundation layer; a second run reuses it and
retrains only the two-tower model. The second run's bundle is served with
``gfm serve`` on 127.0.0.1 and queried for a real user of the slice.
"""

import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from gfm.pipelines.demo import MIN_HISTORY, format_prediction, pick_user, titles_of
from gfm.pipelines.foundation import read_foundation_manifest
from gfm.pipelines.local_run import run_local
from gfm.pipelines.run_config import load_run_config
from gfm.serving.client import RecommendClient
from gfm.twotower.bundle import Bundle

pytestmark = pytest.mark.slow

SLICE_USERS = 150
SLICE_ITEMS = 400
SEED = 7

# Small settings so both runs finish in a few minutes on 2 cores.
SLICE_SETTINGS = {
    "split.protocol": "leave_last_n",
    "split.n_test": 2,
    "split.n_valid": 1,
    "split.cold_item_fraction": 0.05,
    "featurize.engine": "sentence-transformers",
    "hgnn.max_epochs": 1,
    "hgnn.edges_per_relation": 5000,
    "hgnn.num_workers": 1,
    "twotower.max_epochs": 1,
    "twotower.num_threads": 1,
    "evaluation.baselines": ["popularity", "item-knn"],
    "deploy.dry_run": True,
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def runs(save_movielens_slice, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    sliced = save_movielens_slice(root / "slice", SLICE_USERS, SLICE_ITEMS, seed=SEED)
    settings = dict(SLICE_SETTINGS, **{"dataset.name": "files",
                                       "dataset.uri": str(root / "slice")})
    run_config = load_run_config("movielens-1m").with_overrides(settings)
    foundation = str(root / "foundation")

    full = run_local(run_config, root / "pipeline-root",
                     publish_foundation_uri=foundation)
    reuse = run_local(run_config, root / "pipeline-root", reuse_foundation=True,
                      foundation_uri=foundation)
    return {"slice": sliced, "full": full, "reuse": reuse, "foundation": foundation}


def test_full_run_writes_every_stage_output(runs):
    full = runs["full"]
    dataset = full.metadata[_key(full, "ingest", "dataset")]

    for task, name in [("ingest", "dataset"), ("split", "split"),
                       ("featurize", "embeddings"), ("build-graph", "graph"),
                       ("train-hgnn", "embeddings"), ("publish-foundation", "published"),
                       ("train-two-tower", "model"), ("evaluate", "metrics"),
                       ("deploy", "decision")]:
        assert full.output(task, name).is_dir(), (task, name)
    assert dataset["users"] == SLICE_USERS
    assert dataset["items"] == SLICE_ITEMS
    assert (full.output("evaluate", "metrics") / "metrics.json").is_file()
    assert (full.bundle_dir / "bundle.json").is_file()


def _key(run, task, name):
    path = run.output(task, name)
    return next(key for key, value in run.outputs.items() if value == path)


def test_full_run_publishes_foundation(runs):
    manifest = read_foundation_manifest(runs["foundation"])
    items = len(runs["slice"].items)

    assert manifest["num_items"] == items
    assert manifest["llm_dim"] == 384
    assert manifest["hgnn_dim"] > 0
    assert manifest["run_name"].startswith("gfm-2t-hgnn")


def test_reuse_run_skips_foundation_layer(runs):
    reuse = runs["reuse"]
    task_folders = {path.name for path in reuse.run_dir.iterdir()}
    bundle = Bundle.load(reuse.bundle_dir)
    published = Bundle.load(runs["full"].bundle_dir)

    assert not task_folders & {"featurize", "build-graph", "train-hgnn"}
    assert reuse.output("train-two-tower", "model").is_dir()
    assert np.array_equal(bundle.embeddings["hgnn"].matrix,
                          published.embeddings["hgnn"].matrix)
    assert np.array_equal(bundle.embeddings["llm"].matrix,
                          published.embeddings["llm"].matrix)
    assert bundle.model_version == reuse.run_dir.name
    assert bundle.model_version != published.model_version


def test_deploy_decides_in_dry_run(runs):
    decision = runs["reuse"].output("deploy", "decision") / "deploy.json"
    document = json.loads(decision.read_text(encoding="utf-8"))

    assert document["action"] == "dry_run"
    spec = document["inference_service"]
    assert spec["kind"] == "InferenceService"
    assert spec["metadata"]["name"] == "gfm-recommender"


def test_served_bundle_recommends_for_real_user(runs, tmp_path):
    bundle_dir = runs["reuse"].bundle_dir
    bundle = Bundle.load(bundle_dir)
    user = sorted(runs["slice"].interactions["user_id"].unique())[0]
    consumed = set(bundle.history(user) or [])
    port = _free_port()
    log = (tmp_path / "serve.log").open("w", encoding="utf-8")
    server = subprocess.Popen(
        [sys.executable, "-m", "gfm.cli", "serve", "--bundle", str(bundle_dir),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        with RecommendClient(f"http://127.0.0.1:{port}") as client:
            client.wait_ready(timeout_s=120)
            known, by_history = client.recommend([
                {"product": "movies", "user_id": user, "k": 10},
                {"product": "movies", "history": sorted(consumed)[:5], "k": 5},
            ])
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    assert known["model_version"] == bundle.model_version
    assert len(known["item_ids"]) == 10
    assert not set(known["item_ids"]) & consumed
    assert known["scores"] == sorted(known["scores"], reverse=True)
    assert set(known["item_ids"]) <= set(bundle.products["movies"].item_ids)
    assert not known.get("fallback")
    assert len(by_history["item_ids"]) == 5
    assert by_history["history_used"] == 5


def test_demo_helpers_pick_user_and_show_titles(runs):
    bundle = Bundle.load(runs["reuse"].bundle_dir)
    titles = titles_of(runs["reuse"].output("ingest", "dataset"))

    user = pick_user(bundle)
    history = bundle.history(user)
    prediction = {
        "product": "movies", "user_id": user, "model_version": bundle.model_version,
        "item_ids": history[:3], "scores": [0.9, 0.5, 0.1],
    }
    text = format_prediction(prediction, titles, history)

    assert len(history) >= MIN_HISTORY
    assert len(titles) == SLICE_ITEMS
    assert f"product movies for user {user}" in text
    assert titles[history[0]] in text
    assert "   1. " in text
