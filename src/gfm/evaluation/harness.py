"""Run scorers over a context's users and collect the metrics of every slice."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import scipy.sparse as sp
import torch

from gfm.evaluation.config import EvaluationConfig
from gfm.evaluation.context import EvaluationContext
from gfm.evaluation.metrics import (
    BatchRanking,
    coverage,
    ranking_keys,
    removed_mask,
    score_positives,
    tie_break_offsets,
    top_items,
)
from gfm.evaluation.scorer import Scorer, check_scores
from gfm.evaluation.slices import Slice, View, build_slices, build_views
from gfm.logging_setup import progress_enabled

logger = logging.getLogger(__name__)


def metric_keys(context: EvaluationContext) -> list[str]:
    """Return the metric names of a context's rows, cut-offs included."""
    config = context.config
    return [f"hr@{config.hit_k}", "mrr", f"recall@{config.ranking_k}",
            f"ndcg@{config.ranking_k}", f"coverage@{config.coverage_k}"]


@dataclass
class EvaluationResult:
    """Metrics of several scorers on one product.

    Attributes:
        product: the product.
        rows: one dict per scorer and slice with ``model``, ``product``,
            ``slice``, ``view``, ``num_users`` and every metric of
            :func:`metric_keys`; a metric is NaN when ``num_users`` is 0.
        timings: per model, ``fit_s`` and ``score_s`` (seconds) and
            ``users`` scored.
        slices: slice name to its description.
        report: the context's counts and drops, and per model the users
            scored by the popularity fallback (``fallback_users``), the
            candidates without an item vector (``missing_items``) and, for
            EASE, the items it cannot rank above its floor with the test
            positives on them (``excluded_items``).
    """

    product: str
    rows: list[dict[str, Any]]
    timings: dict[str, dict[str, float]]
    slices: dict[str, str]
    report: dict[str, Any] = field(default_factory=dict)

    def value(self, model: str, slice_name: str, metric: str) -> float:
        """Return one figure.

        Raises:
            KeyError: if no row has that model and slice.
        """
        for row in self.rows:
            if row["model"] == model and row["slice"] == slice_name:
                return float(row[metric])
        raise KeyError(f"no result for model {model!r} on slice {slice_name!r}")


def evaluate_scorers(context: EvaluationContext,
                     scorers: Iterable[Scorer]) -> EvaluationResult:
    """Fit and score every scorer on the context's evaluated users.

    Args:
        context: the product's evaluation context.
        scorers: scorers to evaluate, in report order; names must be unique.

    Returns:
        The metrics of every scorer on every slice.

    Raises:
        ValueError: if two scorers share a name or a scorer returns scores
            of the wrong shape or with non-finite values.
    """
    scorers = list(scorers)
    names = [s.name for s in scorers]
    if len(set(names)) != len(names):
        raise ValueError(f"scorer names must be unique, got {names}")

    views = build_views(context)
    slices = build_slices(context, views)
    result = EvaluationResult(
        product=context.product, rows=[], timings={},
        slices={s.name: s.description for s in slices},
        report={"context": context.report, "fallback_users": {}, "missing_items": {},
                "excluded_items": {}},
    )
    for scorer in scorers:
        with _torch_threads(context.config.num_threads):
            per_view, timing = _rank_all_users(context, scorer, views)
        result.timings[scorer.name] = timing
        for counter in ("fallback_users", "missing_items"):
            count = getattr(scorer, counter, None)
            if count is not None:
                result.report[counter][scorer.name] = int(count)
        excluded = getattr(scorer, "excluded_items", None)
        if excluded:
            result.report["excluded_items"][scorer.name] = dict(excluded)
        for slice_ in slices:
            result.rows.append(_slice_row(context, scorer.name, slice_,
                                          views[slice_.view], per_view[slice_.view]))
        warm = result.value(scorer.name, "warm", metric_keys(context)[0])
        logger.info(
            "evaluated %s on product %s: %s on warm users %.4f; fit %.1f s, "
            "scoring %.1f s for %d users", scorer.name, context.product,
            metric_keys(context)[0], warm, timing["fit_s"], timing["score_s"],
            timing["users"],
        )
    return result


@contextlib.contextmanager
def _torch_threads(num_threads: int | None):
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _rank_all_users(
    context: EvaluationContext,
    scorer: Scorer,
    views: dict[str, View],
) -> tuple[dict[str, BatchRanking], dict[str, float]]:
    config = context.config
    started = time.monotonic()
    scorer.fit(context)
    fit_s = time.monotonic() - started

    started = time.monotonic()
    num_users = len(context.eval_user_ids)
    batches: dict[str, list[BatchRanking]] = {name: [] for name in views}
    counted_diagonals = {
        name: sp.diags(view.counted.astype(np.float32)) for name, view in views.items()
        if view.counted is not None
    }
    candidate_columns = {
        name: np.flatnonzero(view.candidates) for name, view in views.items()
        if view.candidates is not None
    }
    starts = range(0, num_users, config.batch_size)
    if progress_enabled():
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"{scorer.name} on {context.product}", unit="batch")
    for start in starts:
        stop = min(start + config.batch_size, num_users)
        user_ids = context.eval_user_ids[start:stop]
        scores = scorer.score(user_ids)
        check_scores(scorer.name, scores, len(user_ids), context.num_items)

        offsets = tie_break_offsets(user_ids, context.num_items, config.tie_break_seed)
        keys = ranking_keys(scores, offsets)
        history = context.product_history(context.eval_user_rows[start:stop])
        for name, ranking in _rank_views(keys, history, context.positives[start:stop],
                                         views, counted_diagonals, candidate_columns,
                                         config).items():
            batches[name].append(ranking)
    timing = {"fit_s": fit_s, "score_s": time.monotonic() - started, "users": num_users}
    merged = {name: _concatenate(parts) for name, parts in batches.items()}
    return merged, timing


def _rank_views(keys: torch.Tensor, history: sp.csr_matrix, positives: sp.csr_matrix,
                views: dict[str, View], counted_diagonals: dict[str, sp.spmatrix],
                candidate_columns: dict[str, np.ndarray],
                config: EvaluationConfig) -> dict[str, BatchRanking]:
    # Views over every item share one ranking; a view with its own candidate
    # set ranks only those columns and maps its top items back.
    depth = max(config.hit_k, config.ranking_k, config.coverage_k)
    cutoffs = (config.hit_k, config.ranking_k, config.coverage_k)
    shared = top_items(keys, removed_mask(history, None), depth)
    rankings = {}
    for name, view in views.items():
        counted = (positives if view.counted is None
                   else sp.csr_matrix(positives @ counted_diagonals[name]))
        if view.candidates is None:
            rankings[name] = score_positives(shared, counted, *cutoffs)
            continue
        columns = candidate_columns[name]
        own = top_items(keys[:, columns], removed_mask(history[:, columns], None), depth)
        ranking = score_positives(own, counted[:, columns], *cutoffs)
        ranking.top_items = np.where(ranking.top_items >= 0,
                                     columns[ranking.top_items], -1).astype(np.int32)
        rankings[name] = ranking
    return rankings


def _concatenate(parts: list[BatchRanking]) -> BatchRanking:
    return BatchRanking(
        has_positive=np.concatenate([p.has_positive for p in parts]),
        hr=np.concatenate([p.hr for p in parts]),
        mrr=np.concatenate([p.mrr for p in parts]),
        recall=np.concatenate([p.recall for p in parts]),
        ndcg=np.concatenate([p.ndcg for p in parts]),
        top_items=np.concatenate([p.top_items for p in parts]),
    )


def _slice_row(context: EvaluationContext, model: str, slice_: Slice, view: View,
               ranking: BatchRanking) -> dict[str, Any]:
    users = slice_.users & ranking.has_positive
    count = int(users.sum())
    hit, mrr, recall, ndcg, cover = metric_keys(context)
    num_candidates = (context.num_items if view.candidates is None
                      else int(view.candidates.sum()))
    row: dict[str, Any] = {
        "model": model,
        "product": context.product,
        "slice": slice_.name,
        "view": view.name,
        "num_users": count,
    }
    if count == 0:
        row.update({key: float("nan") for key in (hit, mrr, recall, ndcg, cover)})
        return row
    row[hit] = float(ranking.hr[users].mean())
    row[mrr] = float(ranking.mrr[users].mean())
    row[recall] = float(ranking.recall[users].mean())
    row[ndcg] = float(ranking.ndcg[users].mean())
    row[cover] = coverage(ranking.top_items[users], num_candidates)
    return row
