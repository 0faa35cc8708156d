"""Validation of recommendation requests, shared by the V1 and V2 protocols.

One request carries a list of instances. Each instance is a JSON object:

| key | type | meaning |
| --- | --- | --- |
| ``product`` | string, required | the product (item type model) to rank for |
| ``k`` | integer, optional | number of items to return, 1 to ``max_k`` |
| ``user_id`` | string, optional | a user of the training window |
| ``history`` | list, optional | items the user just consumed, oldest first |
| ``exclude_consumed`` | boolean, optional | drop history items from the results |
| ``item_types`` | list of strings, optional | return only items of these types |

A ``history`` entry is an item id string, or an object
``{"item_id": str, "timestamp": number | str}`` with the time in Unix seconds
or ISO 8601. When every entry has a timestamp the history is sorted by it;
mixing entries with and without timestamps is invalid. Keys outside the table
are invalid, so a misspelt option never passes silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

INSTANCE_KEYS = ("product", "k", "user_id", "history", "exclude_consumed", "item_types")


class InvalidRequestError(ValueError):
    """A request that cannot be served as sent.

    Args:
        field: the offending field as a path, for example ``instances[2].k``.
        message: what is wrong and how to fix it.
    """

    def __init__(self, field: str, message: str):
        super().__init__(f"invalid {field}: {message}")
        self.field = field


@dataclass
class RecommendRequest:
    """One validated instance.

    Args:
        position: index of the instance in the request.
        product: product to rank for.
        k: number of items to return.
        user_id: user of the training window, if given.
        history: item ids the user just consumed, oldest first.
        exclude_consumed: whether consumed items are dropped from the results.
        item_types: item types to return, or ``None`` for all of the product's.
    """

    position: int
    product: str
    k: int
    user_id: str | None
    history: list[str]
    exclude_consumed: bool
    item_types: tuple[str, ...] | None


def parse_instances(
    instances: Any,
    product_types: Mapping[str, Sequence[str]],
    *,
    max_instances: int,
    max_k: int,
    default_k: int,
    exclude_consumed: bool,
) -> list[RecommendRequest]:
    """Validate a request's instances.

    Args:
        instances: the decoded ``instances`` value of the request.
        product_types: item types of each product the bundle serves.
        max_instances: maximum number of instances.
        max_k: maximum ``k``.
        default_k: ``k`` of an instance without one.
        exclude_consumed: default of ``exclude_consumed``.

    Returns:
        One :class:`RecommendRequest` per instance, in request order.

    Raises:
        InvalidRequestError: naming the first invalid field.
    """
    if not isinstance(instances, list):
        raise InvalidRequestError(
            "instances", f"expected a list of objects, got {_type_name(instances)}"
        )
    if not instances:
        raise InvalidRequestError("instances", "the list is empty; send at least one instance")
    if len(instances) > max_instances:
        raise InvalidRequestError(
            "instances",
            f"{len(instances)} instances exceed the maximum of {max_instances}; "
            "split the request",
        )
    return [
        _parse_instance(position, instance, product_types, max_k, default_k,
                        exclude_consumed)
        for position, instance in enumerate(instances)
    ]


def _parse_instance(
    position: int,
    instance: Any,
    product_types: Mapping[str, Sequence[str]],
    max_k: int,
    default_k: int,
    exclude_consumed: bool,
) -> RecommendRequest:
    where = f"instances[{position}]"
    if not isinstance(instance, dict):
        raise InvalidRequestError(where, f"expected an object, got {_type_name(instance)}")
    unknown = sorted(set(instance) - set(INSTANCE_KEYS))
    if unknown:
        raise InvalidRequestError(
            f"{where}.{unknown[0]}",
            f"unknown key; expected keys among {list(INSTANCE_KEYS)}",
        )

    product = instance.get("product")
    if product is None:
        raise InvalidRequestError(
            f"{where}.product", f"missing; expected one of {sorted(product_types)}"
        )
    if not isinstance(product, str) or product not in product_types:
        raise InvalidRequestError(
            f"{where}.product",
            f"unknown product {product!r}; expected one of {sorted(product_types)}",
        )

    k = instance.get("k", default_k)
    # KServe decodes V1 bodies with orjson, which reads an integer beyond 64
    # bits as a float, so 10**30 arrives as 1e30 and is out of range, not a number.
    if isinstance(k, float) and k.is_integer() and not 1 <= k <= max_k:
        raise InvalidRequestError(f"{where}.k", f"{k:g} is out of range; use 1 to {max_k}")
    if isinstance(k, bool) or not isinstance(k, int):
        raise InvalidRequestError(f"{where}.k", f"expected an integer, got {_type_name(k)}")
    if not 1 <= k <= max_k:
        raise InvalidRequestError(f"{where}.k", f"{k} is out of range; use 1 to {max_k}")

    user_id = instance.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise InvalidRequestError(
            f"{where}.user_id", f"expected a string, got {_type_name(user_id)}"
        )

    exclude = instance.get("exclude_consumed", exclude_consumed)
    if not isinstance(exclude, bool):
        raise InvalidRequestError(
            f"{where}.exclude_consumed", f"expected true or false, got {_type_name(exclude)}"
        )

    return RecommendRequest(
        position=position,
        product=product,
        k=k,
        user_id=user_id,
        history=_parse_history(f"{where}.history", instance.get("history")),
        exclude_consumed=exclude,
        item_types=_parse_item_types(
            f"{where}.item_types", instance.get("item_types"), product_types[product]
        ),
    )


def _parse_history(where: str, history: Any) -> list[str]:
    if history is None:
        return []
    if not isinstance(history, list):
        raise InvalidRequestError(where, f"expected a list, got {_type_name(history)}")

    item_ids: list[str] = []
    timestamps: list[float | None] = []
    for position, entry in enumerate(history):
        if isinstance(entry, str):
            item_ids.append(entry)
            timestamps.append(None)
        elif isinstance(entry, dict):
            item_id, timestamp = _parse_event(f"{where}[{position}]", entry)
            item_ids.append(item_id)
            timestamps.append(timestamp)
        else:
            raise InvalidRequestError(
                f"{where}[{position}]",
                f"expected an item id string or an object with item_id, got "
                f"{_type_name(entry)}",
            )

    timed = sum(t is not None for t in timestamps)
    if timed == 0:
        return item_ids
    if timed < len(timestamps):
        first = next(i for i, t in enumerate(timestamps) if t is None)
        raise InvalidRequestError(
            f"{where}[{first}].timestamp",
            "missing, but other entries have one; give every entry a timestamp or none",
        )
    # sorted() is stable, so events with equal timestamps keep request order.
    order = sorted(range(len(item_ids)), key=lambda i: timestamps[i])
    return [item_ids[i] for i in order]


def _parse_event(where: str, entry: dict) -> tuple[str, float | None]:
    unknown = sorted(set(entry) - {"item_id", "timestamp"})
    if unknown:
        raise InvalidRequestError(
            f"{where}.{unknown[0]}", "unknown key; expected item_id and timestamp"
        )
    item_id = entry.get("item_id")
    if not isinstance(item_id, str):
        raise InvalidRequestError(
            f"{where}.item_id", f"expected a string, got {_type_name(item_id)}"
        )
    timestamp = entry.get("timestamp")
    if timestamp is None:
        return item_id, None
    if isinstance(timestamp, bool):
        raise InvalidRequestError(
            f"{where}.timestamp", "expected Unix seconds or an ISO 8601 string, got a boolean"
        )
    if isinstance(timestamp, (int, float)):
        if not math.isfinite(timestamp):
            raise InvalidRequestError(f"{where}.timestamp", f"{timestamp} is not finite")
        return item_id, float(timestamp)
    if isinstance(timestamp, str):
        try:
            parsed = datetime.fromisoformat(timestamp)
        except ValueError:
            raise InvalidRequestError(
                f"{where}.timestamp",
                f"{timestamp!r} is not ISO 8601; use for example 2024-05-01T12:00:00Z",
            ) from None
        return item_id, _to_unix_seconds(parsed)
    raise InvalidRequestError(
        f"{where}.timestamp",
        f"expected Unix seconds or an ISO 8601 string, got {_type_name(timestamp)}",
    )


def _to_unix_seconds(moment: datetime) -> float:
    # A time without a zone is read as UTC, as the interactions table stores it.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _parse_item_types(
    where: str, item_types: Any, product_item_types: Sequence[str]
) -> tuple[str, ...] | None:
    if item_types is None:
        return None
    if not isinstance(item_types, list) or not item_types:
        raise InvalidRequestError(
            where,
            f"expected a non-empty list of item types among {sorted(product_item_types)}",
        )
    for position, item_type in enumerate(item_types):
        if not isinstance(item_type, str) or item_type not in product_item_types:
            raise InvalidRequestError(
                f"{where}[{position}]",
                f"unknown item type {item_type!r}; this product ranks "
                f"{sorted(product_item_types)}",
            )
    return tuple(dict.fromkeys(item_types))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)
