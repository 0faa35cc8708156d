"""Tests of train_hgnn on Ray Train: outputs, restarts, job submission, gs://.

All runs share the package's local Ray cluster (2 CPUs) and train on the
Last.fm-2k slice (artists and tags, three relations), so the 2-worker DDP
run meets batches whose loss reads only some of the item types.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from gfm import storage
from gfm.cli import main
from gfm.embeddings import ItemEmbeddings
from gfm.graph import load_graph
from gfm.hgnn import HGNNConfig, embed_items, load_model, train_hgnn

pytestmark = pytest.mark.slow

BASE = {"max_epochs": 5, "patience": 5, "hidden_dim": 64, "out_dim": 64}
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def single_run(ray_local, lastfm_graph, tmp_path_factory):
    out = tmp_path_factory.mktemp("hgnn-single")
    config = HGNNConfig.from_dict(dict(BASE, num_workers=1))
    return out, train_hgnn(lastfm_graph, str(out), config)


def test_outputs_follow_hgnn_layout(single_run):
    out, result = single_run
    for name in (
        "model/model.pt",
        "model/config.json",
        "embeddings/embeddings.npy",
        "embeddings/items.parquet",
        "embeddings/metadata.json",
        "metrics.json",
    ):
        assert (out / name).is_file(), name
    saved = ItemEmbeddings.load(out / "embeddings")
    assert saved.item_ids == result.embeddings.item_ids
    assert np.array_equal(saved.matrix, result.embeddings.matrix)
    metrics = storage.read_json(out / "metrics.json")
    assert len(metrics["history"]) == 5
    assert metrics["summary"]["epochs"] == 5
    assert metrics["checkpoint_uri"] == result.checkpoint_uri
    assert set(metrics["split"]) == {
        "artist__co__artist",
        "artist__co__tag",
        "tag__co__tag",
    }
    assert Path(result.checkpoint_uri, "state.pt").is_file()


def test_embeddings_cover_catalog_unit_norm(single_run, lastfm_graph):
    _, result = single_run
    data = load_graph(lastfm_graph).data
    embeddings = result.embeddings
    expected_ids = list(data["artist"].item_ids) + list(data["tag"].item_ids)
    assert embeddings.item_ids == expected_ids
    assert (
        embeddings.item_types
        == ["artist"] * data["artist"].num_nodes + ["tag"] * data["tag"].num_nodes
    )
    assert embeddings.dim == 64
    assert np.allclose(np.linalg.norm(embeddings.matrix, axis=1), 1.0, atol=1e-5)

    degree = torch.zeros(data["artist"].num_nodes, dtype=torch.long)
    for edge_type in data.edge_types:
        if edge_type[2] == "artist":
            degree += torch.bincount(
                data[edge_type].edge_index[1], minlength=degree.numel()
            )
    cold = embeddings.metadata["items_without_edges"]["artist"]
    assert cold == int((degree == 0).sum()) >= 12
    isolated = embeddings.matrix[: data["artist"].num_nodes][(degree == 0).numpy()]
    assert np.isfinite(isolated).all()


def test_single_worker_beats_random(single_run, lastfm_graph):
    _, result = single_run
    summary = result.metrics["summary"]
    data = load_graph(lastfm_graph).data
    # Random HR@k is about k / num_items of the destination type; the
    # smallest type (80 tags) gives the highest chance level.
    random_hr = summary["hr_k"] / min(data[t].num_nodes for t in data.node_types)
    assert summary["best_val_auc"] > 0.7
    assert summary["best_val_hr"] > 2 * random_hr
    losses = [h["train_loss"] for h in result.metrics["history"]]
    assert losses[-1] < losses[0]


def test_load_model_embeds_items_added_later(single_run, lastfm_graph):
    out, result = single_run
    model = load_model(out / "model")
    data = load_graph(lastfm_graph).data
    store = data["artist"]
    new_ids = ["artist:new-1", "artist:new-2", "artist:new-3"]
    store.x = torch.cat([store.x, store.x[:3] + 0.01])
    store.item_ids = list(store.item_ids) + new_ids
    store.num_nodes = store.x.shape[0]
    embeddings = embed_items(model, data)
    new_rows = embeddings.select(new_ids)
    assert np.isfinite(new_rows).all()
    assert np.allclose(np.linalg.norm(new_rows, axis=1), 1.0, atol=1e-5)
    # Items without edges add no messages, so every known item keeps its vector.
    known = result.embeddings.item_ids
    assert np.allclose(embeddings.select(known), result.embeddings.matrix, atol=1e-5)


def test_embed_command_writes_embeddings(single_run, lastfm_graph, tmp_path):
    out, result = single_run
    target = tmp_path / "embedded"
    command = ["hgnn", "embed", "--model", str(out / "model"), "--graph", lastfm_graph]
    assert main([*command, "--out", str(target)]) == 0
    embedded = ItemEmbeddings.load(target)
    assert embedded.item_ids == result.embeddings.item_ids
    assert np.allclose(embedded.matrix, result.embeddings.matrix, atol=1e-5)


def _train_workers() -> list[psutil.Process]:
    # Ray's processes are children of this test process, so other Ray
    # clusters on the machine are never touched.
    workers = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.name().startswith("ray::RayTrainWorker"):
                workers.append(process)
        except psutil.NoSuchProcess:
            continue
    return workers


def _registered_checkpoints(run_dir: Path) -> int:
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    try:
        return len(json.loads(snapshot.read_text())["checkpoint_results"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def test_killed_worker_resumes_from_checkpoint(
    ray_local, lastfm_graph, single_run, tmp_path
):
    config = HGNNConfig.from_dict(
        dict(
            BASE,
            num_workers=2,
            # Many short epochs, so the kill lands well before the run ends.
            max_epochs=15,
            patience=15,
            max_failures=2,
            run_name="killed",
        )
    )
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = train_hgnn(lastfm_graph, str(tmp_path), config)
        except Exception as error:  # noqa: BLE001 - the asserts below report it
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    run_dir = tmp_path / "ray" / "killed"
    # A checkpoint on storage is only restored once the controller has
    # registered it, which it records in the checkpoint manager's snapshot.
    _wait_for(
        lambda: _registered_checkpoints(run_dir) >= 1,
        RUN_TIMEOUT_S,
        "a registered checkpoint",
    )
    workers = _train_workers()
    assert len(workers) == 2
    workers[-1].send_signal(signal.SIGKILL)
    thread.join(RUN_TIMEOUT_S)

    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    history = result.metrics["history"]
    assert [h["epoch"] for h in history] == list(range(1, 16))
    assert result.metrics["summary"]["attempts"] == 2
    assert {h["attempt"] for h in history} == {1, 2}
    # Same epochs, same pairs per epoch: the 2-worker run's first epochs
    # match the 1-worker run, and its longer run does not end worse.
    single = single_run[1].metrics["summary"]
    same_epochs = max(h["val_auc"] for h in history[: single["epochs"]])
    assert abs(same_epochs - single["best_val_auc"]) < 0.05
    assert result.metrics["summary"]["best_val_auc"] > single["best_val_auc"] - 0.02
    assert result.metrics["summary"]["num_workers"] == 2


def test_job_submission_warm_start_into_gcs(
    ray_local, gcs_emulator, lastfm_graph, single_run
):
    bucket = gcs_emulator.create_bucket("gfm-hgnn-job")
    graph_uri = f"{bucket}/graph"
    out_uri = f"{bucket}/out"
    storage.copy_tree(lastfm_graph, graph_uri)
    _, cold = single_run
    config = HGNNConfig.from_dict(
        dict(
            BASE,
            launcher="job-submission",
            num_workers=1,
            max_epochs=1,
            cluster={
                "address": ray_local.dashboard_url,
                "env": {"STORAGE_EMULATOR_HOST": gcs_emulator.url},
                "poll_interval_s": 1.0,
                "timeout_s": float(RUN_TIMEOUT_S),
            },
        )
    )
    result = train_hgnn(graph_uri, out_uri, config, resume_from=cold.checkpoint_uri)

    assert result.checkpoint_uri.startswith(f"{bucket}/out/ray/")
    assert storage.exists(storage.join(result.checkpoint_uri, "state.pt"))
    assert storage.exists(f"{out_uri}/model/model.pt")
    warm_start = result.metrics["warm_start"]
    assert warm_start["uri"] == cold.checkpoint_uri
    assert warm_start["new"] == 0
    assert warm_start["copied"] > 0
    # One epoch from the trained weights scores about as well as the
    # trained model, and better than one epoch from scratch.
    first = result.metrics["history"][0]["val_auc"]
    assert first > cold.metrics["summary"]["best_val_auc"] - 0.03
    assert first > cold.metrics["history"][0]["val_auc"] - 0.005
    assert len(result.embeddings) == len(cold.embeddings)


def test_resume_run_continues_named_run(ray_local, lastfm_graph, tmp_path):
    config = HGNNConfig.from_dict(
        dict(
            BASE,
            num_workers=1,
            max_epochs=1,
            run_name="weekly",
            storage_path=str(tmp_path / "ray"),
        )
    )
    first = train_hgnn(lastfm_graph, str(tmp_path / "first"), config)
    # Ray Train would continue the run in the folder, so reusing the name
    # without resume_run raises before anything trains.
    with pytest.raises(FileExistsError, match="resume_run: true"):
        train_hgnn(lastfm_graph, str(tmp_path / "second"), config.replace(max_epochs=2))

    resumed = train_hgnn(
        lastfm_graph,
        str(tmp_path / "second"),
        config.replace(max_epochs=2, resume_run=True),
    )
    history = resumed.metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert [h["attempt"] for h in history] == [1, 2]
    assert history[0]["train_loss"] == first.metrics["history"][0]["train_loss"]
    assert resumed.metrics["run_uri"] == first.metrics["run_uri"]
