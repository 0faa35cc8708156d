"""The per-worker training loop: epochs, validation, early stopping, state.

The loop does not import Ray. A caller passes :class:`LoopHooks` with the
worker's rank, world size, device, a model wrapper (DDP under Ray Train)
and an ``on_epoch_end`` callback (``ray.train.report`` under Ray Train), so
the same loop runs in a test process and on every Ray worker. With
``world_size > 1`` it expects ``torch.distributed`` to be initialized.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType

from gfm.hgnn.artifacts import check_graph
from gfm.hgnn.config import HGNNConfig
from gfm.hgnn.inference import embed_graph
from gfm.hgnn.metrics import link_metrics
from gfm.hgnn.model import (
    HeteroGraphSAGE,
    build_model,
    count_parameters,
    upgrade_state_dict,
)
from gfm.hgnn.objective import batch_loss
from gfm.hgnn.sampling import (
    build_neighbor_sampler,
    check_epoch_has_pairs,
    draw_epoch_edges,
    epoch_batches,
    isolate_nodes,
    min_relation_cap,
    relation_cap,
    relations_below_cap_floor,
)
from gfm.hgnn.split import LinkSplit, relation_name, split_edges
from gfm.logging_setup import progress_enabled

logger = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Everything needed to continue a run after its last completed epoch.

    Args:
        epoch: epochs completed.
        model_state: ``state_dict`` of the network after ``epoch``.
        optimizer_state: ``state_dict`` of Adam after ``epoch``.
        best_model_state: ``state_dict`` at the best validation score.
        best_score: best value of the early-stopping metric so far.
        best_epoch: epoch (1-based) of ``best_score``.
        epochs_without_improvement: epochs since ``best_epoch``.
        stopped_early: whether patience ran out.
        history: one metrics dict per completed epoch.
        attempts: starts of the loop in this run, 1 plus restarts from a
            checkpoint after a failure.
        info: graph, split and model facts for reports.
    """

    epoch: int = 0
    model_state: dict = field(default_factory=dict)
    optimizer_state: dict = field(default_factory=dict)
    best_model_state: dict = field(default_factory=dict)
    best_score: float = -math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)
    attempts: int = 1
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the state as plain containers and tensors, for ``torch.save``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainState:
        """Rebuild a state saved with :meth:`to_dict`."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _identity(model: nn.Module) -> nn.Module:
    return model


def _no_report(metrics: dict, state: TrainState | None) -> None:
    return None


@dataclass
class LoopHooks:
    """Runtime of one worker, as the loop sees it.

    Args:
        rank: this worker's rank.
        world_size: number of workers.
        device: device of the model and batches.
        wrap_model: wraps the network for training, such as DDP.
        on_epoch_end: called on every worker after each epoch with that
            epoch's metrics, and a :class:`TrainState` on rank 0 at
            checkpoint epochs (``None`` otherwise).
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    wrap_model: Callable[[nn.Module], nn.Module] = _identity
    on_epoch_end: Callable[[dict, TrainState | None], None] = _no_report


# A warm start that copies less than this share of the network's parameter
# tensors mostly trains from scratch, which the log reports as a warning.
WARM_START_MIN_SHARE = 0.5


def load_warm_start(network: HeteroGraphSAGE, weights: dict) -> dict[str, int]:
    """Copy matching weights into ``network`` and count what was not copied.

    A parameter is copied when the previous run has one of the same name and
    shape; new relations or item types start from fresh weights. Weights
    saved with a per-relation bias are converted first
    (:func:`~gfm.hgnn.model.upgrade_state_dict`).
    """
    weights = upgrade_state_dict(weights)
    own = network.state_dict()
    matched = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    network.load_state_dict(matched, strict=False)
    counts = {
        "copied": len(matched),
        "new": len(own) - len(matched),
        "unused": len(weights) - len(matched),
    }
    if len(matched) < WARM_START_MIN_SHARE * len(own):
        logger.warning(
            "warm start copied only %d of %d parameter tensors (%s); the rest start "
            "from fresh weights. Check that hidden_dim, out_dim, num_layers, project "
            "and the item types match the run warm-started from",
            len(matched),
            len(own),
            counts,
        )
    else:
        logger.info("warm start: %s parameter tensors", counts)
    return counts


def check_training_data(
    data: HeteroData,
    config: HGNNConfig,
    *,
    world_size: int | None = None,
    warn: bool = True,
) -> LinkSplit:
    """Split ``data`` for training and check that every epoch trains.

    The driver calls this before it starts Ray, so that a bad graph fails
    once with a clear error instead of on every worker and every retry.
    :func:`train_loop` repeats the split and its checks on each worker,
    without the field checks of :func:`~gfm.hgnn.artifacts.check_graph`.

    Args:
        data: the co-interaction graph.
        config: training settings.
        world_size: workers sharing an epoch; ``None`` uses
            ``config.num_workers``.
        warn: log warnings about small relations and missing validation
            pairs.

    Returns:
        The edge split.

    Raises:
        ValueError: if the graph misses fields or has no edges to train on,
            or if an epoch would give a worker no training pair.
    """
    check_graph(data)
    return _split_for_training(data, config, world_size=world_size, warn=warn)


def _split_for_training(
    data: HeteroData, config: HGNNConfig, *, world_size: int | None, warn: bool
) -> LinkSplit:
    # The checks of check_training_data that need no item_ids, which the
    # loop repeats on each worker.
    world_size = world_size or config.num_workers
    split = split_edges(data, config.valid_fraction, config.seed)
    sizes = {r: int(p.shape[1]) for r, p in split.train_pairs.items()}
    check_epoch_has_pairs(
        sizes,
        balanced=config.balanced_sampling,
        edges_per_relation=config.edges_per_relation,
        batch_size=config.batch_size,
        world_size=world_size,
    )
    if warn:
        _warn_about_split(split, sizes, config, world_size)
    return split


def _warn_about_split(
    split: LinkSplit,
    sizes: dict[EdgeType, int],
    config: HGNNConfig,
    world_size: int,
) -> None:
    balanced, limit = config.balanced_sampling, config.edges_per_relation
    floor = min_relation_cap(config.batch_size, world_size)
    small = relations_below_cap_floor(sizes, balanced, limit, floor)
    if small:
        logger.warning(
            "relations %s have fewer training pairs than one batch per worker "
            "(batch_size %d x %d workers = %d), so none of them sets the balancing "
            "cap: the cap is %d pairs per relation instead of %d, and each of them "
            "trains on all its pairs every epoch",
            {relation_name(r): n for r, n in small.items()},
            config.batch_size,
            world_size,
            floor,
            relation_cap(sizes, balanced, limit, floor),
            relation_cap(sizes, balanced, limit),
        )
    if not has_validation_pairs(split):
        logger.warning(
            "no relation has validation pairs (valid_fraction=%s of %s pairs rounds "
            "to 0), so val_auc and val_hr are NaN, early stopping is off and the "
            "output uses the last epoch's weights; raise valid_fraction or add edges",
            config.valid_fraction,
            {relation_name(r): n for r, n in sizes.items()},
        )


def has_validation_pairs(split: LinkSplit) -> bool:
    """Return whether any relation of ``split`` has a validation pair."""
    return any(p.shape[1] > 0 for p in split.valid_pairs.values())


def _all_reduce_sum(values: list[float], hooks: LoopHooks) -> list[float]:
    if hooks.world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def _broadcast(values: list[float], hooks: LoopHooks) -> list[float]:
    if hooks.world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


def _run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    split: LinkSplit,
    sampler,
    config: HGNNConfig,
    epoch: int,
    hooks: LoopHooks,
) -> dict[str, float]:
    draw = draw_epoch_edges(
        split.train_pairs,
        epoch=epoch,
        seed=config.seed,
        balanced=config.balanced_sampling,
        edges_per_relation=config.edges_per_relation,
        rank=hooks.rank,
        world_size=hooks.world_size,
        min_cap=min_relation_cap(config.batch_size, hooks.world_size),
    )
    # Neighbour and negative draws use the global generator: seed it per
    # epoch and worker so a restarted attempt repeats the same epoch.
    torch.manual_seed(config.seed * 1_000_003 + epoch * 1_009 + hooks.rank)

    model.train()
    loss_sum, steps = 0.0, 0
    batches = epoch_batches(
        split.message_graph,
        sampler,
        draw,
        batch_size=config.batch_size,
        num_neighbors=config.num_neighbors,
        num_negatives=config.num_negatives,
        epoch=epoch,
        seed=config.seed,
    )
    # Only rank 0 draws a bar, because every worker takes the same number of steps.
    if hooks.rank == 0 and progress_enabled():
        from tqdm import tqdm

        batches = tqdm(
            batches,
            total=draw.num_batches(config.batch_size),
            desc=f"epoch {epoch + 1}",
            unit="batch",
            leave=False,
        )
    for relation, batch in batches:
        batch = batch.to(hooks.device)
        edge_index_dict = batch.edge_index_dict
        if config.isolate_fraction > 0.0:
            edge_index_dict = isolate_nodes(batch, config.isolate_fraction)
        embeddings = model(batch.x_dict, edge_index_dict)
        loss = batch_loss(
            embeddings,
            batch,
            relation,
            margin=config.margin,
            in_batch_negatives=config.in_batch_negatives,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach())
        steps += 1

    loss_sum, total_steps, total_pairs = _all_reduce_sum(
        [loss_sum, float(steps), float(draw.num_pairs)], hooks
    )
    stats = {
        "train_loss": loss_sum / max(total_steps, 1.0),
        "train_pairs": int(total_pairs),
        "steps_per_worker": steps,
    }
    for relation in draw.drawn:
        name = relation_name(relation)
        stats[f"train_pairs/{name}"] = (
            draw.drawn[relation] - draw.dropped_for_shards[relation]
        )
        stats[f"dropped_by_cap/{name}"] = draw.dropped_by_cap[relation]
        stats[f"dropped_for_shards/{name}"] = draw.dropped_for_shards[relation]
    return stats


def _validate(
    network: HeteroGraphSAGE, split: LinkSplit, config: HGNNConfig, device: torch.device
) -> dict[str, float]:
    embeddings = embed_graph(
        network,
        split.message_graph,
        fanouts=config.inference_fanouts,
        batch_size=config.embed_batch_size,
        seed=config.seed,
        device=device,
    )
    embeddings = {t: e.cpu() for t, e in embeddings.items()}
    return link_metrics(
        embeddings,
        split.valid_pairs,
        split.train_pairs,
        k=config.hr_k,
        max_pairs=config.max_valid_edges,
        seed=config.seed,
    )


def _improved(score: float, best: float) -> bool:
    # A NaN score never improves on the best one.
    return not math.isnan(score) and score > best


def train_loop(
    data: HeteroData,
    config: HGNNConfig,
    *,
    state: TrainState | None = None,
    warm_start: dict | None = None,
    hooks: LoopHooks | None = None,
) -> TrainState:
    """Train the HGNN on ``data`` and return the final state.

    Args:
        data: the co-interaction graph in the "Graph" layout.
        config: training settings.
        state: the state of an interrupted attempt to continue from.
        warm_start: a previous run's network ``state_dict`` to start from
            (ignored when ``state`` is given).
        hooks: runtime of this worker; defaults to one CPU worker.

    Returns:
        The state after the last epoch; ``best_model_state`` contains the
        weights at the best validation score (on rank 0). Without
        validation pairs there is no score, so it contains the last epoch's
        weights and patience never runs out.

    Raises:
        ValueError: if the graph has no edges to train on, or an epoch would
            give a worker no training pair.
    """
    hooks = hooks or LoopHooks()
    started = time.perf_counter()
    split = _split_for_training(
        data, config, world_size=hooks.world_size, warn=hooks.rank == 0
    )
    validated = has_validation_pairs(split)
    graph = split.message_graph
    network = build_model(
        graph.node_types,
        graph.edge_types,
        {t: int(graph[t].x.shape[1]) for t in graph.node_types},
        config,
    )
    if state is not None:
        network.load_state_dict(state.model_state)
        logger.info(
            "continuing after epoch %d (attempt %d)", state.epoch, state.attempts
        )
    else:
        state = TrainState()
        if warm_start is not None:
            state.info["warm_start"] = load_warm_start(network, warm_start)
    state.info.update(
        split=split.counts(),
        dropped_pairs=split.dropped,
        num_parameters=count_parameters(network),
    )
    network.to(hooks.device)
    model = hooks.wrap_model(network)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    if state.optimizer_state:
        optimizer.load_state_dict(state.optimizer_state)
    sampler = build_neighbor_sampler(graph, config.num_neighbors)
    logger.info(
        "training on rank %d of %d: relations %s, epochs %d to %d",
        hooks.rank,
        hooks.world_size,
        [relation_name(r) for r in split.relations],
        state.epoch + 1,
        config.max_epochs,
    )

    for epoch in range(state.epoch, config.max_epochs):
        epoch_started = time.perf_counter()
        metrics: dict[str, Any] = {"epoch": epoch + 1, "attempt": state.attempts}
        metrics.update(
            _run_epoch(model, optimizer, split, sampler, config, epoch, hooks)
        )
        train_time = time.perf_counter() - epoch_started

        if hooks.rank == 0:
            metrics.update(_validate(network, split, config, hooks.device))
        score = float(metrics.get(config.early_stopping_metric, math.nan))
        (score,) = _broadcast([score], hooks)

        state.epoch = epoch + 1
        # Without validation pairs every score is NaN and no epoch can be
        # preferred, so the newest weights count as the best.
        is_best = (
            not validated or _improved(score, state.best_score) or state.best_epoch == 0
        )
        if is_best:
            state.best_score = score
            state.best_epoch = epoch + 1
            state.epochs_without_improvement = 0
            if hooks.rank == 0:
                state.best_model_state = {
                    k: v.detach().cpu().clone() for k, v in network.state_dict().items()
                }
        else:
            state.epochs_without_improvement += 1
        state.stopped_early = state.epochs_without_improvement >= config.patience
        finished = state.stopped_early or state.epoch == config.max_epochs

        metrics.update(
            train_time_s=train_time,
            epoch_time_s=time.perf_counter() - epoch_started,
            pairs_per_s=metrics["train_pairs"] / max(train_time, 1e-9),
            best_epoch=state.best_epoch,
            best_score=state.best_score,
        )
        state.history.append(metrics)
        logger.info(
            "epoch %d: loss %.4f, %s %.4f, %.1f s, %.0f pairs/s",
            epoch + 1,
            metrics["train_loss"],
            config.early_stopping_metric,
            score,
            metrics["epoch_time_s"],
            metrics["pairs_per_s"],
        )

        checkpoint_due = finished or state.epoch % config.checkpoint_every == 0
        snapshot = None
        if checkpoint_due and hooks.rank == 0:
            state.model_state = {
                k: v.detach().cpu() for k, v in network.state_dict().items()
            }
            state.optimizer_state = optimizer.state_dict()
            snapshot = state
        hooks.on_epoch_end(metrics, snapshot)
        if finished:
            break

    logger.info(
        "training finished after %d epochs in %.1f s: best %s %.4f at epoch %d%s",
        state.epoch,
        time.perf_counter() - started,
        config.early_stopping_metric,
        state.best_score,
        state.best_epoch,
        " (stopped early)" if state.stopped_early else "",
    )
    return state
