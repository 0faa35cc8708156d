"""Full-ranking evaluation of 2T-HGNN against baselines, and its report.

The library path is :func:`build_context` (index one product's history, test
positives and embeddings), :func:`evaluate_scorers` (rank every candidate
item for every evaluated user, per slice) and :func:`write_report`.
"""

from gfm.evaluation.baselines import (
    EASEScorer,
    EmbeddingKNNScorer,
    ItemKNNScorer,
    PopularityScorer,
    make_baselines,
)
from gfm.evaluation.config import EvaluationConfig
from gfm.evaluation.context import EvaluationContext, build_context
from gfm.evaluation.harness import EvaluationResult, evaluate_scorers
from gfm.evaluation.report import aggregate_seeds, deploy_gate, write_report
from gfm.evaluation.scorer import Scorer

__all__ = [
    "EASEScorer",
    "EmbeddingKNNScorer",
    "EvaluationConfig",
    "EvaluationContext",
    "EvaluationResult",
    "ItemKNNScorer",
    "PopularityScorer",
    "Scorer",
    "aggregate_seeds",
    "build_context",
    "deploy_gate",
    "evaluate_scorers",
    "make_baselines",
    "write_report",
]
