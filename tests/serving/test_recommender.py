"""In-process ranking of a real bundle: histories, filters, fallbacks, IVF."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gfm.serving import protocol
from gfm.serving.config import ServingConfig
from gfm.serving.recommender import Recommender
from gfm.serving.request import parse_instances
from gfm.twotower.bundle import Bundle


@pytest.fixture(scope="module")
def recommender(ml1m_bundle):
    return Recommender.load(ml1m_bundle.uri)


def ask(recommender, *instances):
    config = recommender.config
    requests = parse_instances(list(instances), recommender.product_types,
                               max_instances=config.max_instances, max_k=config.max_k,
                               default_k=config.default_k,
                               exclude_consumed=config.exclude_consumed)
    return recommender.recommend(requests)


def test_recommender_product_types(recommender):
    assert recommender.product_types == {"movie": ("movie",), "movie_alt": ("movie",)}
    assert recommender.model_version == "ml1m-test-1"
    assert recommender.catalogs["movie"].dim == 16


def test_resolve_history_appends_recent_items(recommender, ml1m_bundle):
    [request] = parse_instances(
        [{"product": "movie", "user_id": ml1m_bundle.known_user,
          "history": ml1m_bundle.recent_items + ["movie:unknown"]}],
        recommender.product_types, max_instances=1, max_k=10, default_k=10,
        exclude_consumed=True)
    stored = recommender.bundle.history(ml1m_bundle.known_user)
    history = recommender.resolve_history(request)
    assert history.known_user is True
    assert history.consumed == stored + ml1m_bundle.recent_items
    assert history.unknown_items == 1
    assert history.used[-len(ml1m_bundle.recent_items):] == ml1m_bundle.recent_items


def test_recommender_truncates_long_history(ml1m_bundle):
    short = Recommender.load(ml1m_bundle.uri, ServingConfig(bundle_uri=ml1m_bundle.uri,
                                                            max_history=3))
    [prediction] = ask(short, {"product": "movie", "user_id": ml1m_bundle.known_user,
                               "history": ml1m_bundle.recent_items})
    stored = short.bundle.history(ml1m_bundle.known_user)
    assert prediction["history_used"] == 3
    assert prediction["history_truncated"] == len(stored) + len(ml1m_bundle.recent_items) - 3
    # Truncation limits the user tower's input, not the exclusion of consumed items.
    assert prediction["excluded"] == len(stored) + len(ml1m_bundle.recent_items)
    assert not set(prediction["item_ids"]) & set(stored)


def test_recommender_features_only_user(recommender, ml1m_bundle):
    [prediction] = ask(recommender, {"product": "movie", "k": 5,
                                     "user_id": ml1m_bundle.features_only_user})
    [cold] = ask(recommender, {"product": "movie", "k": 5})
    assert prediction["known_user"] is True
    assert prediction["history_used"] == 0
    assert prediction["fallback"] is None
    assert len(prediction["item_ids"]) == 5
    assert cold["fallback"] == "popularity"


def test_recommender_batch_equals_single_calls(recommender, ml1m_bundle):
    instances = [{"product": "movie", "k": 4, "user_id": ml1m_bundle.known_user},
                 {"product": "movie", "k": 6},
                 {"product": "movie", "k": 2, "history": ml1m_bundle.recent_items}]
    batch = ask(recommender, *instances)
    single = [ask(recommender, instance)[0] for instance in instances]
    assert [p["item_ids"] for p in batch] == [p["item_ids"] for p in single]
    assert [len(p["item_ids"]) for p in batch] == [4, 6, 2]


def test_recommender_mixed_products_keep_order(recommender, ml1m_bundle):
    user = ml1m_bundle.known_user
    instances = [{"product": "movie_alt", "k": 5, "user_id": user},
                 {"product": "movie", "k": 5, "user_id": user},
                 {"product": "movie_alt", "k": 3},
                 {"product": "movie", "k": 4, "history": ml1m_bundle.recent_items}]
    batch = ask(recommender, *instances)
    single = [ask(recommender, instance)[0] for instance in instances]
    assert [p["product"] for p in batch] == ["movie_alt", "movie", "movie_alt", "movie"]
    assert [p["item_ids"] for p in batch] == [p["item_ids"] for p in single]
    assert batch[0]["item_ids"] != batch[1]["item_ids"]
    assert batch[2]["fallback"] == "popularity"


def test_recommender_scores_are_user_item_cosines(recommender, ml1m_bundle):
    [prediction] = ask(recommender, {"product": "movie", "k": 3,
                                     "history": ml1m_bundle.recent_items})
    product = recommender.bundle.products["movie"]
    user = product.user_vectors([ml1m_bundle.recent_items])[0]
    rows = [product.item_ids.index(i) for i in prediction["item_ids"]]
    expected = product.item_vectors()[rows] @ user
    np.testing.assert_allclose(prediction["scores"], expected, rtol=1e-5)


def test_recommender_ivf_index(ml1m_bundle, recommender):
    config = ServingConfig(bundle_uri=ml1m_bundle.uri, index="ivf", ann_min_items=1,
                           ann_nprobe=16)
    approximate = Recommender.load(ml1m_bundle.uri, config)
    instance = {"product": "movie", "k": 10, "user_id": ml1m_bundle.known_user}
    [found] = ask(approximate, instance)
    [truth] = ask(recommender, instance)
    assert approximate.catalogs["movie"].ann is not None
    assert found["exact"] is False
    assert len(found["item_ids"]) == 10
    assert len(set(found["item_ids"]) & set(truth["item_ids"])) >= 7
    assert not set(found["item_ids"]) & set(approximate.bundle.history(ml1m_bundle.known_user))


def edited_copy(source: str, target: Path, edit_histories=None, drop_users=False) -> str:
    shutil.copytree(source, target)
    path = target / "histories.parquet"
    if edit_histories is not None:
        pq.write_table(edit_histories(pq.read_table(path)), path)
    if drop_users:
        (target / "users.parquet").unlink()
        manifest = json.loads((target / "bundle.json").read_text())
        manifest["has_users"] = False
        (target / "bundle.json").write_text(json.dumps(manifest))
    return str(target)


def test_bundle_sorts_unsorted_histories(ml1m_bundle, recommender, tmp_path, caplog):
    def shuffle(table):
        order = np.random.default_rng(0).permutation(table.num_rows)
        return table.take(pa.array(order))

    uri = edited_copy(ml1m_bundle.uri, tmp_path / "bundle", shuffle)
    with caplog.at_level(logging.WARNING, logger="gfm.twotower.bundle"):
        shuffled = Bundle.load(uri)
    rows = pq.read_table(Path(ml1m_bundle.uri) / "histories.parquet").to_pandas()
    time_of = {(u, i): t for u, i, t in zip(rows["user_id"], rows["item_id"], rows["timestamp"])}
    users = recommender.bundle._history_span.keys()

    assert "histories.parquet is not sorted by user_id and timestamp" in caplog.text
    assert shuffled._history_span.keys() == users
    for user in users:
        history = shuffled.history(user)
        # Items rated in the same second may come in any order.
        assert sorted(history) == sorted(recommender.bundle.history(user))
        times = [time_of[(user, item)] for item in history]
        assert times == sorted(times)


def test_stored_history_ignores_unknown_items(ml1m_bundle, recommender, tmp_path):
    user = ml1m_bundle.known_user
    stored = recommender.bundle.history(user)
    renamed = set(stored[::2])

    def rename_some(table):
        items = ["unknown:" + i if i in renamed else i for i in table.column("item_id").to_pylist()]
        return table.set_column(table.schema.get_field_index("item_id"), "item_id",
                                pa.array(items))

    edited = Recommender.load(edited_copy(ml1m_bundle.uri, tmp_path / "bundle",
                                           rename_some))
    [prediction] = ask(edited, {"product": "movie", "k": 5, "user_id": user,
                                 "history": ["movie:nope"]})
    history = edited.resolve_history(parse_instances(
        [{"product": "movie", "user_id": user}], edited.product_types, max_instances=1,
        max_k=10, default_k=10, exclude_consumed=True)[0])

    assert history.used == [i for i in stored if i not in renamed]
    assert prediction["history_used"] == len(stored) - len(renamed)
    assert prediction["unknown_items"] == len(renamed) + 1
    assert prediction["fallback"] is None


def test_unknown_stored_history_falls_back(ml1m_bundle, tmp_path):
    def rename_all(table):
        return table.set_column(table.schema.get_field_index("item_id"), "item_id",
                                pa.array(["unknown:item"] * table.num_rows))

    uri = edited_copy(ml1m_bundle.uri, tmp_path / "bundle", rename_all, drop_users=True)
    edited = Recommender.load(uri)
    stored = len(edited.bundle.history(ml1m_bundle.known_user))
    first, second, cold = ask(edited,
                              {"product": "movie", "k": 5, "user_id": ml1m_bundle.known_user},
                              {"product": "movie", "k": 5, "user_id": "2"},
                              {"product": "movie", "k": 5})

    assert first["known_user"] is True
    assert first["fallback"] == "popularity"
    assert first["fallback_reason"] == "unknown_items_only"
    assert first["history_used"] == 0
    assert first["unknown_items"] == stored
    assert second["fallback"] == "popularity"
    assert first["item_ids"] == cold["item_ids"]


def test_non_finite_user_vector_falls_back(recommender, ml1m_bundle, monkeypatch):
    product = recommender.bundle.products["movie"]
    real = product.user_vectors

    def poisoned(histories, features=None):
        vectors = real(histories, features)
        vectors[0] = np.nan
        return vectors

    monkeypatch.setattr(product, "user_vectors", poisoned)
    broken, fine = ask(recommender,
                       {"product": "movie", "k": 5, "user_id": ml1m_bundle.known_user},
                       {"product": "movie", "k": 5, "history": ml1m_bundle.recent_items})

    assert broken["fallback"] == "popularity"
    assert broken["fallback_reason"] == "non_finite_user_vector"
    assert all(math.isfinite(score) for score in broken["scores"])
    assert len(broken["item_ids"]) == 5
    assert fine["fallback"] is None
    assert all(math.isfinite(score) for score in fine["scores"])


def test_encode_v2_rejects_nan():
    with pytest.raises(ValueError, match="JSON compliant"):
        protocol.encode_v2([{"scores": [float("nan")]}], "gfm", "v1", None)


def test_excluded_exact_and_ivf_agree(ml1m_bundle, recommender):
    config = ServingConfig(bundle_uri=ml1m_bundle.uri, index="ivf", ann_min_items=1,
                           ann_nprobe=64)
    approximate = Recommender.load(ml1m_bundle.uri, config)
    instance = {"product": "movie", "k": 10, "history": [ml1m_bundle.recent_items[0]] * 50}
    [found] = ask(approximate, instance)
    [truth] = ask(recommender, instance)

    assert found["exact"] is False
    assert truth["exact"] is True
    assert found["excluded"] == 1
    assert truth["excluded"] == 1
