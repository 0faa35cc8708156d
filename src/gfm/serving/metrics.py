"""Prometheus metrics of the recommendation server.

They live in ``prometheus_client``'s default registry, which KServe's
``/metrics`` endpoint exports next to its own ``request_*_seconds``
histograms. Label values are bounded, so no request can add series:
``model_name`` takes the names of the models the server serves, or
``unknown``; ``product`` takes only the bundle's product names (an unknown
product is counted as an invalid request instead); ``reason`` and ``field``
take a fixed set of codes.
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import Counter, Histogram

from gfm.serving.request import INSTANCE_KEYS

# Values of the ``field`` label: the top-level fields of V1 and V2 requests,
# the keys of an instance, and ``other`` for any other field a client sends.
OTHER_FIELD = "other"
FIELD_LABELS = frozenset(("body", "instances", "id", "inputs", "outputs", "parameters",
                          *INSTANCE_KEYS, OTHER_FIELD))
# Value of the ``model_name`` label for a request path naming no served model.
UNKNOWN_MODEL = "unknown"

INSTANCES = Counter(
    "gfm_recommend_instances",
    "Recommendation instances served, by product",
    ["model_name", "product"],
)
FALLBACKS = Counter(
    "gfm_recommend_fallbacks",
    "Instances answered with the popularity fallback, by product and reason",
    ["model_name", "product", "reason"],
)
UNKNOWN_ITEMS = Counter(
    "gfm_recommend_unknown_history_items",
    "History item ids not in the bundle's catalog, ignored, by product",
    ["model_name", "product"],
)
INVALID_REQUESTS = Counter(
    "gfm_recommend_invalid_requests",
    "Requests rejected with HTTP 400, by the top-level field at fault",
    ["model_name", "field"],
)
SCORING_SECONDS = Histogram(
    "gfm_recommend_scoring_seconds",
    "Time to score one product's instances of a request, in seconds",
    ["model_name", "product"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


def field_label(field: str) -> str:
    """Return the bounded label of an invalid field path.

    ``instances[3].history[2].item_id`` becomes ``history``. A field outside
    ``FIELD_LABELS``, such as an unknown key the client chose, becomes
    ``other``, so the label set stays fixed whatever the request.
    """
    parts = field.split(".")
    name = parts[1] if len(parts) > 1 and parts[0].startswith("instances[") else parts[0]
    name = name.split("[", 1)[0]
    return name if name in FIELD_LABELS else OTHER_FIELD


def model_label(name: str, served: Collection[str]) -> str:
    """Return ``name`` if the server serves a model of that name, else ``unknown``."""
    return name if name in served else UNKNOWN_MODEL
