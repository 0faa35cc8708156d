"""Tests of building an evaluation context from interaction tables."""

from __future__ import annotations

import pandas as pd
import pytest

from gfm.evaluation.config import EvaluationConfig
from gfm.evaluation.context import build_context

from .helpers import interactions, two_type_catalogue


def _context(**overrides):
    history = interactions([
        ("u1", "artist:0", 5), ("u1", "artist:1", 3), ("u1", "tag:0", 1),
        ("u2", "tag:1", 1),
        ("u3", "artist:0", 4), ("u3", "artist:0", 4),
        ("u3", "artist:4", 2),          # artist:4 is cold, so this row is dropped
        ("u3", "artist:99", 1),         # not in the catalogue
    ])
    test = interactions([
        ("u1", "artist:2", 5),
        ("u1", "artist:1", 5),          # already in u1's history
        ("u1", "artist:3", 2),          # below the minimum weight
        ("u1", "tag:2", 5),             # another product
        ("u2", "artist:3", 4), ("u2", "artist:3", 5),   # duplicate pair
        ("u4", "artist:4", 4),          # a new user on a cold item
        ("u5", "artist:77", 4),         # not in the catalogue
    ], day=2)
    arguments = dict(product="artist", item_types=["artist"],
                     items=two_type_catalogue(), history=history, test=test,
                     cold_item_ids=["artist:4"],
                     config=EvaluationConfig(positive_min_weight=4.0))
    arguments.update(overrides)
    return build_context(**arguments)


def test_build_context_counts_dropped_rows_by_reason():
    context = _context()

    assert context.report["history_dropped"] == {"unknown_item": 1, "cold_item": 1}
    dropped = context.report["test_dropped"]
    assert dropped["unknown_item"] == 1
    assert dropped["other_product"] == 1
    assert dropped["below_min_weight"] == 1
    assert dropped["duplicate_pair"] == 1
    assert dropped["already_in_history"] == 1


def test_build_context_indexes_positives_and_history():
    context = _context()

    assert context.item_ids == [f"artist:{i}" for i in range(5)]
    assert context.eval_user_ids == ["u1", "u2", "u4"]
    assert context.positives.toarray().tolist() == [
        [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]
    assert context.popularity.tolist() == [2, 1, 0, 0, 0]
    assert context.cold_items.tolist() == [False, False, False, False, True]
    u3 = context.user_rows(["u3"])[0]
    assert context.history[u3].sum() == 2  # two events on artist:0
    assert context.report["counts"]["eval_users"] == 3


def test_build_context_unknown_user_raises_key_error():
    context = _context()

    with pytest.raises(KeyError, match="nobody"):
        context.user_rows(["nobody"])


def test_build_context_rejects_product_without_items():
    with pytest.raises(ValueError, match="no items of types"):
        _context(item_types=["album"])


def test_build_context_rejects_test_without_positives():
    with pytest.raises(ValueError, match="no test positives"):
        _context(config=EvaluationConfig(positive_min_weight=10.0))


def test_build_context_rejects_unknown_cold_item():
    with pytest.raises(ValueError, match="cold items are not in the catalogue"):
        _context(cold_item_ids=["artist:1234"])


def test_build_context_rejects_repeated_item_ids():
    catalogue = two_type_catalogue()
    with pytest.raises(ValueError, match="more than once"):
        _context(items=pd.concat([catalogue, catalogue.head(1)], ignore_index=True))


def test_build_context_missing_weight_column_raises():
    test = interactions([("u1", "artist:2", 5)], day=2).drop(columns=["weight"])

    with pytest.raises(ValueError, match=r"positive_min_weight=4.0 needs a 'weight' "
                                         r"column .*set positive_min_weight to null"):
        _context(test=test)
    # Without positive_min_weight the column is not needed.
    assert _context(test=test, config=EvaluationConfig()).report["counts"]["test_positives"] == 1


def test_build_context_rejects_repeated_user_ids():
    users = pd.DataFrame({"user_id": ["u1", "u2", "u1"], "gender": ["F", "M", "M"]})

    with pytest.raises(ValueError, match=r"users.user_id must be unique.*\['u1'\]"):
        _context(users=users)


def test_tie_break_seed_must_be_non_negative():
    with pytest.raises(ValueError, match="tie_break_seed must be a non-negative integer"):
        EvaluationConfig(tie_break_seed=-1)
    with pytest.raises(ValueError, match="tie_break_seed must be a non-negative integer"):
        EvaluationConfig(tie_break_seed=1.5)


def test_evaluation_config_from_dict_rejects_unknown_key():
    config = EvaluationConfig.from_dict({"hit_k": 5, "history_parts": ["train"]})

    assert config.hit_k == 5
    assert config.history_parts == ("train",)
    assert config.to_dict()["history_parts"] == ["train"]
    with pytest.raises(ValueError, match="hitk"):
        EvaluationConfig.from_dict({"hitk": 5})
    with pytest.raises(ValueError, match="popularity_tier_shares"):
        EvaluationConfig(popularity_tier_shares=(0.8, 0.5))
    with pytest.raises(ValueError, match="history_parts"):
        EvaluationConfig(history_parts=("valid",))
    with pytest.raises(ValueError, match="baselines"):
        EvaluationConfig(baselines=("popularity", "bpr"))
    with pytest.raises(ValueError, match="num_threads"):
        EvaluationConfig(num_threads=0)
    assert EvaluationConfig.from_dict({"num_threads": None}).num_threads is None
