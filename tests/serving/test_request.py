"""Validation of recommendation instances."""

from __future__ import annotations

import pytest

from gfm.serving import metrics
from gfm.serving.request import InvalidRequestError, parse_instances

PRODUCTS = {"movie": ("movie",), "music": ("artist", "tag")}


def parse(instances, **overrides):
    settings = dict(max_instances=4, max_k=50, default_k=10, exclude_consumed=True)
    settings.update(overrides)
    return parse_instances(instances, PRODUCTS, **settings)


def test_parse_instances_defaults():
    [request] = parse([{"product": "movie"}])
    assert request.product == "movie"
    assert request.k == 10
    assert request.user_id is None
    assert request.history == []
    assert request.exclude_consumed is True
    assert request.item_types is None
    assert request.position == 0


def test_parse_instances_all_options():
    [_, request] = parse([
        {"product": "movie"},
        {"product": "music", "k": 3, "user_id": "user:7", "history": ["artist:1", "tag:2"],
         "exclude_consumed": False, "item_types": ["tag", "tag"]},
    ])
    assert request.position == 1
    assert request.k == 3
    assert request.user_id == "user:7"
    assert request.history == ["artist:1", "tag:2"]
    assert request.exclude_consumed is False
    assert request.item_types == ("tag",)


def test_parse_history_sorted_by_timestamp():
    [request] = parse([{"product": "movie", "history": [
        {"item_id": "movie:3", "timestamp": "2024-05-01T12:00:00Z"},
        {"item_id": "movie:1", "timestamp": 1_000_000_000},
        {"item_id": "movie:2", "timestamp": "2024-05-01T11:00:00"},
        {"item_id": "movie:4", "timestamp": 1_000_000_000},
    ]}])
    # Equal timestamps keep request order; a zone-less time is UTC.
    assert request.history == ["movie:1", "movie:4", "movie:2", "movie:3"]


@pytest.mark.parametrize(
    ("instances", "field"),
    [
        ({"product": "movie"}, "instances"),
        ([], "instances"),
        ([{"product": "movie"}] * 5, "instances"),
        (["movie"], "instances[0]"),
        ([{"k": 3}], "instances[0].product"),
        ([{"product": "book"}], "instances[0].product"),
        ([{"product": 5}], "instances[0].product"),
        ([{"product": "movie", "k": 0}], "instances[0].k"),
        ([{"product": "movie", "k": 51}], "instances[0].k"),
        ([{"product": "movie", "k": "10"}], "instances[0].k"),
        ([{"product": "movie", "k": 2.5}], "instances[0].k"),
        ([{"product": "movie", "k": True}], "instances[0].k"),
        ([{"product": "movie", "user_id": 17}], "instances[0].user_id"),
        ([{"product": "movie", "history": "movie:1"}], "instances[0].history"),
        ([{"product": "movie", "history": [1]}], "instances[0].history[0]"),
        ([{"product": "movie", "history": [{"timestamp": 1}]}],
         "instances[0].history[0].item_id"),
        ([{"product": "movie", "history": [{"item_id": "m", "time": 1}]}],
         "instances[0].history[0].time"),
        ([{"product": "movie", "history": [{"item_id": "m", "timestamp": "yesterday"}]}],
         "instances[0].history[0].timestamp"),
        ([{"product": "movie", "history": [{"item_id": "m", "timestamp": True}]}],
         "instances[0].history[0].timestamp"),
        ([{"product": "movie", "history": [{"item_id": "a", "timestamp": 1}, "b"]}],
         "instances[0].history[1].timestamp"),
        ([{"product": "movie", "exclude_consumed": "yes"}], "instances[0].exclude_consumed"),
        ([{"product": "movie", "item_types": []}], "instances[0].item_types"),
        ([{"product": "movie", "item_types": "movie"}], "instances[0].item_types"),
        ([{"product": "music", "item_types": ["artist", "movie"]}],
         "instances[0].item_types[1]"),
        ([{"product": "movie", "histroy": ["movie:1"]}], "instances[0].histroy"),
        ([{"product": "movie"}, {"product": "movie", "k": -1}], "instances[1].k"),
    ],
)
def test_parse_instances_rejects_field(instances, field):
    with pytest.raises(InvalidRequestError) as caught:
        parse(instances)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_parse_instances_error_names_fix():
    with pytest.raises(InvalidRequestError, match=r"use 1 to 50"):
        parse([{"product": "movie", "k": 100}])
    with pytest.raises(InvalidRequestError, match=r"\['movie', 'music'\]"):
        parse([{"product": "books"}])
    with pytest.raises(InvalidRequestError, match="split the request"):
        parse([{"product": "movie"}] * 5)


@pytest.mark.parametrize("k", [10**30, 1e30, -1e20, 51.0])
def test_parse_instances_huge_k_out_of_range(k):
    with pytest.raises(InvalidRequestError, match=r"invalid instances\[0\]\.k: .* is out of "
                                                  r"range; use 1 to 50"):
        parse([{"product": "movie", "k": k}])


@pytest.mark.parametrize("k", [2.5, 5.0, float("nan"), float("inf")])
def test_parse_instances_float_k_is_wrong_type(k):
    with pytest.raises(InvalidRequestError, match="expected an integer, got a number"):
        parse([{"product": "movie", "k": k}])


@pytest.mark.parametrize(("field", "label"), [
    ("instances[3].history[2].item_id", "history"),
    ("instances[0].k", "k"),
    ("inputs[0].datatype", "inputs"),
    ("body", "body"),
    ("instances", "instances"),
    ("instances[0].junk_7", "other"),
    ("top_7", "other"),
    ("instances[0]", "instances"),
])
def test_field_label_is_bounded(field, label):
    assert metrics.field_label(field) == label


def test_model_label_is_bounded():
    assert metrics.model_label("gfm", {"gfm"}) == "gfm"
    assert metrics.model_label("m0", {"gfm"}) == "unknown"
