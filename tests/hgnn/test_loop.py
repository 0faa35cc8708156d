"""Tests of the training loop on real MovieLens-1M and Last.fm-2k slices."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch_geometric.data import HeteroData

from gfm.graph import load_graph
from gfm.hgnn import HGNNConfig
from gfm.hgnn.loop import LoopHooks, TrainState, load_warm_start, train_loop
from gfm.hgnn.model import build_model

from .test_split import symmetric_graph

FAST = {"max_epochs": 4, "patience": 4, "hidden_dim": 64, "out_dim": 64}


@pytest.fixture(scope="module")
def movielens_run(movielens_graph):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_graph(movielens_graph).data
        config = HGNNConfig.from_dict(FAST)
        return data, config, train_loop(data, config)
    finally:
        torch.set_num_threads(before)


def test_loss_falls(movielens_run):
    _, _, state = movielens_run
    losses = [h["train_loss"] for h in state.history]
    assert len(losses) == 4
    assert losses[-1] < losses[0]
    assert all(math.isfinite(loss) for loss in losses)


def test_validation_beats_random(movielens_run):
    data, config, state = movielens_run
    best = state.history[state.best_epoch - 1]
    num_movies = data["movie"].num_nodes
    assert best["val_auc"] > 0.8  # random: 0.5
    assert (
        best["val_hr"] > 10 * config.hr_k / num_movies
    )  # random: about k / num_movies
    assert best["val_pairs"] > 100


def test_state_keeps_best_weights_and_counts(movielens_run):
    _, _, state = movielens_run
    assert state.epoch == 4
    assert 1 <= state.best_epoch <= 4
    assert state.best_model_state
    assert state.best_score == state.history[state.best_epoch - 1]["val_auc"]
    assert state.info["split"]["movie__co__movie"]["valid"] > 0
    assert (
        state.history[0]["train_pairs"]
        == state.info["split"]["movie__co__movie"]["train"]
    )


def test_continue_from_state_runs_remaining_epochs(movielens_graph, one_thread):
    data = load_graph(movielens_graph).data
    config = HGNNConfig.from_dict(dict(FAST, max_epochs=2))
    first = train_loop(data, config)
    resumed = train_loop(
        data, config.replace(max_epochs=3), state=TrainState.from_dict(first.to_dict())
    )
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.epoch == 3
    assert resumed.history[:2] == first.history


def test_isolated_nodes_still_train(movielens_graph, one_thread):
    data = load_graph(movielens_graph).data
    config = HGNNConfig.from_dict(dict(FAST, max_epochs=2, patience=2,
                                       isolate_fraction=0.3))
    state = train_loop(data, config)
    losses = [h["train_loss"] for h in state.history]
    assert all(math.isfinite(loss) for loss in losses)
    assert state.history[state.best_epoch - 1]["val_auc"] > 0.7  # random: 0.5


def test_patience_stops_early(movielens_graph, one_thread):
    data = load_graph(movielens_graph).data
    # With lr 0 the weights never change, so no epoch improves on the first.
    config = HGNNConfig.from_dict(dict(FAST, max_epochs=6, patience=2, lr=1e-12))
    state = train_loop(data, config)
    assert state.stopped_early
    assert state.epoch == 3
    assert state.best_epoch == 1


def test_lastfm_three_relations_train_balanced(lastfm_graph, one_thread):
    data = load_graph(lastfm_graph).data
    config = HGNNConfig.from_dict(dict(FAST, max_epochs=2, in_batch_negatives=True))
    state = train_loop(data, config)
    first = state.history[0]
    relations = ["artist__co__artist", "artist__co__tag", "tag__co__tag"]
    drawn = [first[f"train_pairs/{r}"] for r in relations]
    assert len(set(drawn)) == 1  # balanced: every relation gets the smallest size
    smallest = min(state.info["split"][r]["train"] for r in relations)
    assert drawn[0] == smallest
    assert first["dropped_by_cap/artist__co__artist"] > 0
    for relation in relations:
        assert 0.5 < state.history[-1][f"val_auc/{relation}"] <= 1.0


@pytest.mark.parametrize("enabled", [True, False])
def test_progress_bar_follows_setting(monkeypatch, capsys, one_thread, enabled):
    monkeypatch.setattr("gfm.hgnn.loop.progress_enabled", lambda: enabled)
    config = HGNNConfig.from_dict(
        {"max_epochs": 1, "hidden_dim": 8, "out_dim": 8, "batch_size": 16}
    )
    state = train_loop(symmetric_graph(), config)
    assert state.epoch == 1
    steps = state.history[0]["steps_per_worker"]
    # Both relations are capped at the 27 movie-tag pairs, so each makes 2 batches.
    assert steps == 4
    stderr = capsys.readouterr().err
    if enabled:
        assert "epoch 1" in stderr
        assert f"/{steps}" in stderr
    else:
        assert stderr == ""


TINY = {"hidden_dim": 8, "out_dim": 8, "num_neighbors": [2, 2], "batch_size": 16}


def graph_with_one_pair_relation() -> HeteroData:
    data = symmetric_graph()
    data["movie", "co", "tag"].edge_index = torch.tensor([[0], [0]])
    data["tag", "co", "movie"].edge_index = torch.tensor([[0], [0]])
    return data


def test_one_pair_relation_does_not_cap_others(one_thread, caplog):
    config = HGNNConfig.from_dict(dict(TINY, max_epochs=1))
    with caplog.at_level(logging.WARNING, logger="gfm.hgnn"):
        state = train_loop(graph_with_one_pair_relation(), config)
    first = state.history[0]
    # The floor is one batch of 16 per worker; without it the cap would be 1.
    assert first["train_pairs/movie__co__movie"] == 16
    assert first["train_pairs/movie__co__tag"] == 1
    assert first["steps_per_worker"] == 2
    warnings = [r.getMessage() for r in caplog.records if "balancing cap" in r.message]
    assert len(warnings) == 1
    assert "'movie__co__tag': 1" in warnings[0]
    assert "the cap is 16 pairs per relation instead of 1" in warnings[0]


def test_epoch_without_steps_raises():
    # One pair per relation and epoch cannot be shared by 2 workers. The check
    # runs before the loop touches torch.distributed.
    config = HGNNConfig.from_dict(dict(TINY, edges_per_relation=1))
    hooks = LoopHooks(rank=0, world_size=2)
    with pytest.raises(ValueError, match="no optimizer step would run"):
        train_loop(symmetric_graph(), config, hooks=hooks)


def graph_without_validation_pairs() -> HeteroData:
    # 4 pairs per relation: round(4 * 0.1) = 0 are held out.
    data = HeteroData()
    data["movie"].x = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
    pairs = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    data["movie", "co", "movie"].edge_index = torch.cat([pairs, pairs.flip(0)], 1)
    return data


def test_no_validation_keeps_last_weights(one_thread, caplog):
    config = HGNNConfig.from_dict(dict(TINY, max_epochs=3, patience=1))
    with caplog.at_level(logging.WARNING, logger="gfm.hgnn"):
        state = train_loop(graph_without_validation_pairs(), config)
    assert state.epoch == 3
    assert not state.stopped_early
    assert state.best_epoch == 3
    assert all(math.isnan(h["val_auc"]) for h in state.history)
    for name, value in state.model_state.items():
        assert torch.equal(state.best_model_state[name], value), name
    messages = [r.getMessage() for r in caplog.records]
    assert any("no relation has validation pairs" in m for m in messages)


def test_warm_start_copying_little_warns(caplog):
    data = symmetric_graph()
    dims = {t: int(data[t].x.shape[1]) for t in data.node_types}
    small = build_model(data.node_types, data.edge_types, dims, HGNNConfig(**TINY))
    wide = build_model(
        data.node_types,
        data.edge_types,
        dims,
        HGNNConfig(**dict(TINY, hidden_dim=16)),
    )
    with caplog.at_level(logging.INFO, logger="gfm.hgnn"):
        counts = load_warm_start(wide, small.state_dict())
        same = load_warm_start(small, small.state_dict())
    assert counts["copied"] < counts["new"]
    assert same == {"copied": len(small.state_dict()), "new": 0, "unused": 0}
    warm = [r for r in caplog.records if r.getMessage().startswith("warm start")]
    assert [r.levelno for r in warm] == [logging.WARNING, logging.INFO]
