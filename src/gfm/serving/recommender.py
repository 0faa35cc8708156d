"""Real-time recommendations from a serving bundle, independent of KServe.

:class:`Recommender` turns validated requests into rankings. It builds each
user's history from the training-window history of a known user followed by
the request's recent items. It then computes the user vectors of a product's
instances in one user tower call and ranks with :class:`ProductCatalog`. The KServe
model, the benchmark's in-process baseline and the tests all call
:meth:`Recommender.recommend`.

Fallback: an instance without any usable history item and without user
features (an unknown user with no history, or a stored and request history
whose ids are all unknown) gets the product's most popular training items,
with ``fallback`` set to ``"popularity"`` and ``fallback_reason`` saying
why. So does an instance whose user vector is not finite, which the load
checks should rule out, so that no response carries a ``NaN`` score.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gfm.serving.bundle_checks import check_bundle
from gfm.serving.config import ServingConfig
from gfm.serving.request import RecommendRequest
from gfm.serving.scoring import ProductCatalog, Ranking

logger = logging.getLogger(__name__)

FALLBACK_POPULARITY = "popularity"
# Codes of ``fallback_reason``.
REASON_NO_HISTORY = "no_history"
REASON_UNKNOWN_ITEMS_ONLY = "unknown_items_only"
REASON_NON_FINITE_VECTOR = "non_finite_user_vector"


@dataclass
class ResolvedHistory:
    """The history one instance is scored with.

    Args:
        used: catalog item ids fed to the user tower, oldest first.
        consumed: every catalog item id of the user's history, truncated or
            not, for ``exclude_consumed``.
        known_user: whether the bundle has a history or features of ``user_id``.
        unknown_items: history ids, stored or from the request, that are not
            in the bundle's catalog and were ignored.
        truncated: history items beyond ``max_history`` that were left out.
        features: the user's features from the bundle, or ``None``.
    """

    used: list[str]
    consumed: list[str]
    known_user: bool
    unknown_items: int
    truncated: int
    features: dict[str, Any] | None = None


@dataclass
class BatchStats:
    """Counts of one :meth:`Recommender.recommend` call, for logs and metrics."""

    instances: Counter = field(default_factory=Counter)
    fallbacks: Counter = field(default_factory=Counter)
    unknown_items: Counter = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)


class Recommender:
    """Every product of one serving bundle, ready to rank.

    Args:
        bundle: a loaded ``gfm.twotower.bundle.Bundle``.
        config: the serving settings.

    Raises:
        gfm.twotower.bundle.BundleError: if the bundle fails a check of
            :func:`gfm.serving.bundle_checks.check_bundle`.
    """

    def __init__(self, bundle: Any, config: ServingConfig):
        started = time.perf_counter()
        check_bundle(bundle)
        self.bundle = bundle
        self.config = config
        self.model_version = str(bundle.model_version)
        self.catalogs: dict[str, ProductCatalog] = {}
        for name, product in bundle.products.items():
            self.catalogs[name] = self._build_catalog(name, product)
        logger.info(
            "recommender ready: model version %s, products %s, %d catalog items, "
            "built in %.2f s",
            self.model_version,
            {n: c.num_items for n, c in self.catalogs.items()},
            len(bundle.item_index), time.perf_counter() - started,
        )

    @classmethod
    def load(cls, uri: str, config: ServingConfig | None = None) -> Recommender:
        """Load and check the bundle below ``uri`` (a folder or ``gs://`` prefix).

        Raises:
            gfm.twotower.bundle.BundleError: naming what is wrong with the bundle.
        """
        from gfm.twotower.bundle import Bundle

        return cls(Bundle.load(uri), config or ServingConfig(bundle_uri=str(uri)))

    def _build_catalog(self, name: str, product: Any) -> ProductCatalog:
        vectors = np.asarray(product.item_vectors(), dtype=np.float32)
        ann = None
        if self.config.index == "ivf" and len(product.item_ids) >= self.config.ann_min_items:
            from gfm.serving.ann import IVFIndex

            ann = IVFIndex(vectors, nprobe=self.config.ann_nprobe,
                           threads=self.config.torch_threads)
        return ProductCatalog(
            name=name,
            item_ids=product.item_ids,
            item_types=product.item_types_of_rows,
            item_vectors=vectors,
            popularity=self.bundle.popularity(name),
            ann=ann,
        )

    @property
    def product_types(self) -> dict[str, tuple[str, ...]]:
        """Item types each product ranks."""
        return {name: catalog.type_names for name, catalog in self.catalogs.items()}

    def resolve_history(self, request: RecommendRequest) -> ResolvedHistory:
        """Build the history of one instance from the bundle and the request."""
        stored = self.bundle.history(request.user_id) if request.user_id else None
        features = self.bundle.user_features(request.user_id) if request.user_id else None
        item_index = self.bundle.item_index
        # Stored ids are filtered like the request's: a bundle whose histories
        # name items without an embedding must not feed them to the tower.
        known_stored = [i for i in stored or [] if i in item_index]
        recent = [i for i in request.history if i in item_index]
        # Training-window items come first: the request's items are more recent.
        consumed = known_stored + recent
        limit = self.config.max_history
        used = consumed[-limit:] if len(consumed) > limit else consumed
        unknown = (len(stored or []) - len(known_stored)) + (len(request.history) - len(recent))
        return ResolvedHistory(
            used=used,
            consumed=consumed,
            known_user=stored is not None or features is not None,
            unknown_items=unknown,
            truncated=len(consumed) - len(used),
            features=features,
        )

    def recommend(
        self, requests: Sequence[RecommendRequest], stats: BatchStats | None = None
    ) -> list[dict[str, Any]]:
        """Rank items for each request.

        Instances of the same product are scored together: one user tower
        call, one matrix product over the product's item matrix, one top-k.

        Args:
            requests: validated instances (see :func:`gfm.serving.request.parse_instances`).
            stats: filled with per-product counts and scoring times, if given.

        Returns:
            One prediction per request, in request order, with keys
            ``product``, ``item_ids``, ``scores`` (best first),
            ``model_version``, ``user_id``, ``known_user``, ``fallback``,
            ``fallback_reason``, ``history_used``, ``history_truncated``,
            ``unknown_items``, ``excluded`` and ``exact``.
        """
        stats = stats if stats is not None else BatchStats()
        predictions: list[dict[str, Any] | None] = [None] * len(requests)
        by_product: dict[str, list[int]] = defaultdict(list)
        for position, request in enumerate(requests):
            by_product[request.product].append(position)

        for product, positions in by_product.items():
            started = time.perf_counter()
            histories = [self.resolve_history(requests[p]) for p in positions]
            rankings = self._rank_product(product, [requests[p] for p in positions],
                                          histories)
            for position, history, (ranking, reason) in zip(positions, histories, rankings):
                request = requests[position]
                predictions[position] = self._prediction(request, history, ranking, reason)
                stats.instances[product] += 1
                stats.unknown_items[product] += history.unknown_items
                if reason:
                    stats.fallbacks[(product, reason)] += 1
            stats.seconds[product] = time.perf_counter() - started
        return predictions  # type: ignore[return-value]

    def _rank_product(
        self,
        product: str,
        requests: list[RecommendRequest],
        histories: list[ResolvedHistory],
    ) -> list[tuple[Ranking, str | None]]:
        catalog = self.catalogs[product]
        excluded = [
            catalog.rows(h.consumed) if r.exclude_consumed else []
            for r, h in zip(requests, histories)
        ]
        # A known user with features but no history still gets the tower's
        # vector: the features alone are a personal signal.
        personal = [i for i, h in enumerate(histories) if h.used or h.features]
        reasons: dict[int, str] = {
            i: REASON_UNKNOWN_ITEMS_ONLY if h.unknown_items else REASON_NO_HISTORY
            for i, h in enumerate(histories) if not (h.used or h.features)
        }
        results: list[tuple[Ranking, str | None] | None] = [None] * len(requests)

        if personal:
            model = self.bundle.products[product]
            with torch.inference_mode():
                vectors = model.user_vectors(
                    [histories[i].used for i in personal],
                    [histories[i].features for i in personal],
                )
            vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
            finite = torch.isfinite(vectors).all(dim=1).tolist()
            for slot, i in enumerate(personal):
                if not finite[slot]:
                    logger.error("product %r: the user vector of instance %d (user %s) is "
                                 "not finite; answering with the popularity fallback",
                                 product, requests[i].position, requests[i].user_id)
                    reasons[i] = REASON_NON_FINITE_VECTOR
            scored = [slot for slot, ok in enumerate(finite) if ok]
            rankings = catalog.top_k(
                vectors[scored],
                [requests[personal[slot]].k for slot in scored],
                [excluded[personal[slot]] for slot in scored],
                [requests[personal[slot]].item_types for slot in scored],
            )
            for slot, ranking in zip(scored, rankings):
                results[personal[slot]] = (ranking, None)

        if reasons:
            fallback = sorted(reasons)
            rankings = catalog.popular_k(
                [requests[i].k for i in fallback],
                [excluded[i] for i in fallback],
                [requests[i].item_types for i in fallback],
            )
            for i, ranking in zip(fallback, rankings):
                results[i] = (ranking, reasons[i])
        return results  # type: ignore[return-value]

    def _prediction(self, request: RecommendRequest, history: ResolvedHistory,
                    ranking: Ranking, reason: str | None) -> dict[str, Any]:
        return {
            "product": request.product,
            "item_ids": ranking.item_ids,
            "scores": ranking.scores,
            "model_version": self.model_version,
            "user_id": request.user_id,
            "known_user": history.known_user,
            "fallback": FALLBACK_POPULARITY if reason else None,
            "fallback_reason": reason,
            "history_used": len(history.used),
            "history_truncated": history.truncated,
            "unknown_items": history.unknown_items,
            "excluded": ranking.excluded,
            "exact": ranking.exact,
        }
