"""The KServe model that serves every product of one bundle.

KServe calls ``load`` once, then for each request ``preprocess`` (decode and
validate), ``predict`` (rank) and ``postprocess`` (encode). Invalid input
raises :class:`RejectedRequest`, a ``kserve.errors.InvalidInput``, which the
server turns into HTTP 400 with ``{"error": message}``. The message names
the field.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from gfm.serving import metrics, protocol
from gfm.serving.config import ServingConfig
from gfm.serving.kserve_import import kserve
from gfm.serving.recommender import BatchStats, Recommender
from gfm.serving.request import InvalidRequestError, RecommendRequest, parse_instances
from gfm.twotower.bundle import BundleError

logger = logging.getLogger(__name__)


class RejectedRequest(kserve.errors.InvalidInput):
    """An invalid request that :meth:`RecommenderModel.preprocess` has counted.

    The server's handler returns it as HTTP 400 and logs it with
    ``request_id`` (the V2 ``id`` or the ``x-request-id`` header, if any). It
    counts only the ``InvalidInput`` errors KServe raises before the model runs.
    """

    def __init__(self, reason: str, request_id: str | None = None):
        super().__init__(reason)
        self.request_id = request_id


@dataclass
class DecodedRequest:
    """A validated request on its way from ``preprocess`` to ``postprocess``."""

    requests: list[RecommendRequest]
    is_v2: bool
    request_id: str | None
    predictions: list[dict[str, Any]] | None = None


class RecommenderModel(kserve.Model):
    """Real-time recommendations for every product of a serving bundle.

    Args:
        config: serving settings; ``config.bundle_uri`` is read by :meth:`load`.
    """

    def __init__(self, config: ServingConfig):
        super().__init__(config.model_name)
        self.config = config
        self.recommender: Recommender | None = None
        self.load_error: str | None = None

    def load(self) -> bool:
        """Load and check the bundle; become ready only if every check passes.

        Returns:
            Whether the model is ready. On failure ``load_error`` contains
            the reason, and the model stays unready (KServe returns 503).
        """
        started = time.perf_counter()
        uri = self.config.bundle_uri
        logger.info("loading bundle %s as model %s", uri, self.name)
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        try:
            # The recommender is assigned only once it is complete, so no
            # request can see a partly built one.
            recommender = Recommender.load(uri, self.config)
        except Exception as error:
            # A corrupt bundle can fail in any reader (Parquet, NumPy, torch),
            # and each failure must leave the server up but unready.
            self.load_error = f"{type(error).__name__}: {error}"
            self.ready = False
            # A BundleError message names the problem; anything else gets its
            # traceback, since it points at a bug or an unexpected file.
            logger.error("model %s is not ready: bundle %s was rejected: %s",
                         self.name, uri, self.load_error,
                         exc_info=not isinstance(error, BundleError))
            return False
        self.recommender = recommender
        self.load_error = None
        self.ready = True
        logger.info("model %s ready: version %s from %s in %.2f s", self.name,
                    recommender.model_version, uri, time.perf_counter() - started)
        return True

    def get_input_types(self) -> list[dict]:
        return [{"name": protocol.V2_INPUT, "datatype": protocol.V2_DATATYPE, "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": protocol.V2_OUTPUT, "datatype": protocol.V2_DATATYPE, "shape": [-1]}]

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> DecodedRequest:
        """Decode a V1 body or V2 ``InferRequest`` and validate its instances.

        Raises:
            kserve.errors.InvalidInput: naming the invalid field (HTTP 400).
        """
        recommender = self._ready_recommender()
        is_v2 = isinstance(payload, kserve.InferRequest)
        try:
            instances = protocol.decode_v2(payload) if is_v2 else protocol.decode_v1(payload)
            requests = parse_instances(
                instances,
                recommender.product_types,
                max_instances=self.config.max_instances,
                max_k=self.config.max_k,
                default_k=self.config.default_k,
                exclude_consumed=self.config.exclude_consumed,
            )
        except InvalidRequestError as error:
            metrics.INVALID_REQUESTS.labels(self.name, metrics.field_label(error.field)).inc()
            # gfm.serving.server logs the rejection with the request id.
            raise RejectedRequest(str(error), _request_id(payload, headers)) from None
        return DecodedRequest(requests, is_v2, _request_id(payload, headers))

    def predict(self, payload: DecodedRequest, headers: dict[str, str] | None = None
                ) -> DecodedRequest:
        """Rank the request's instances."""
        recommender = self._ready_recommender()
        stats = BatchStats()
        payload.predictions = recommender.recommend(payload.requests, stats)
        for product, count in stats.instances.items():
            metrics.INSTANCES.labels(self.name, product).inc(count)
        for (product, reason), count in stats.fallbacks.items():
            metrics.FALLBACKS.labels(self.name, product, reason).inc(count)
        for product, count in stats.unknown_items.items():
            if count:
                metrics.UNKNOWN_ITEMS.labels(self.name, product).inc(count)
        for product, seconds in stats.seconds.items():
            metrics.SCORING_SECONDS.labels(self.name, product).observe(seconds)
        return payload

    def postprocess(self, result: DecodedRequest, headers: dict[str, str] | None = None,
                    response_headers: dict[str, str] | None = None) -> Any:
        """Encode the predictions in the protocol of the request."""
        version = self._ready_recommender().model_version
        if result.is_v2:
            return protocol.encode_v2(result.predictions, self.name, version,
                                      result.request_id)
        return protocol.encode_v1(result.predictions, version)

    def _ready_recommender(self) -> Recommender:
        if self.recommender is None:
            raise kserve.errors.ModelNotReady(self.name, self.load_error)
        return self.recommender


def _request_id(payload: Any, headers: dict[str, str] | None) -> str | None:
    if isinstance(payload, kserve.InferRequest) and payload.id:
        return payload.id
    return (headers or {}).get("x-request-id")
