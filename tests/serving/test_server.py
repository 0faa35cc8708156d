"""The real server on 127.0.0.1 with a bundle trained on MovieLens-1M."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from gfm.cli import main as gfm_main
from gfm.serving.client import RecommendClient, RecommendError
from gfm.serving.config import ServingConfig
from gfm.serving.recommender import Recommender
from gfm.serving.request import parse_instances

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(bundle_server):
    return bundle_server("ml1m")


@pytest.fixture(scope="module")
def client(server):
    with RecommendClient(server.url) as client:
        yield client


@pytest.fixture(scope="module")
def local(ml1m_bundle):
    """The same bundle ranked in-process, to compare with the server."""
    return Recommender.load(ml1m_bundle.uri, ServingConfig(bundle_uri=ml1m_bundle.uri))


def post(server, path: str, body, headers=None) -> httpx.Response:
    headers = {"content-type": "application/json"} if headers is None else headers
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=30)


def v2_body(*instances) -> dict:
    texts = [json.dumps(i) for i in instances]
    return {"inputs": [{"name": "instances", "datatype": "BYTES", "shape": [len(texts)],
                        "data": texts}]}


def test_server_known_user(client, ml1m_bundle, local):
    user = ml1m_bundle.known_user
    [prediction] = client.recommend([{"product": "movie", "k": 10, "user_id": user}])
    consumed = set(local.bundle.history(user))

    assert len(prediction["item_ids"]) == 10
    assert prediction["scores"] == sorted(prediction["scores"], reverse=True)
    assert prediction["model_version"] == local.model_version
    assert prediction["known_user"] is True
    assert prediction["fallback"] is None
    assert prediction["history_used"] == min(len(consumed), 200)
    assert not set(prediction["item_ids"]) & consumed
    assert prediction["excluded"] == len(consumed)
    assert all(i.startswith("movie:") for i in prediction["item_ids"])


def test_server_matches_in_process(client, ml1m_bundle, local):
    instances = [
        {"product": "movie", "k": 5, "user_id": ml1m_bundle.known_user},
        {"product": "movie", "k": 7, "history": ml1m_bundle.recent_items},
        {"product": "movie", "k": 3},
    ]
    served = client.recommend(instances)
    requests = parse_instances(instances, local.product_types, max_instances=64,
                               max_k=500, default_k=10, exclude_consumed=True)
    expected = local.recommend(requests)
    for got, want in zip(served, expected):
        assert got["item_ids"] == want["item_ids"]
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-5)
        assert got["fallback"] == want["fallback"]


def test_server_recent_history_only(client, ml1m_bundle):
    history = ml1m_bundle.recent_items + ["movie:does-not-exist", "tag:7"]
    [prediction] = client.recommend([{"product": "movie", "k": 10, "user_id": "new-user",
                                      "history": history}])
    assert prediction["known_user"] is False
    assert prediction["fallback"] is None
    assert prediction["unknown_items"] == 2
    assert prediction["history_used"] == len(ml1m_bundle.recent_items)
    assert not set(prediction["item_ids"]) & set(ml1m_bundle.recent_items)


def test_server_history_changes_ranking(client, ml1m_bundle):
    user = ml1m_bundle.known_user
    [before, after] = client.recommend([
        {"product": "movie", "k": 20, "user_id": user},
        {"product": "movie", "k": 20, "user_id": user,
         "history": ml1m_bundle.recent_items * 50},
    ])
    assert before["item_ids"] != after["item_ids"]
    assert after["history_truncated"] > 0


def test_server_include_consumed(client, ml1m_bundle):
    history = ml1m_bundle.recent_items
    [prediction] = client.recommend([{"product": "movie", "k": 500, "history": history,
                                      "exclude_consumed": False}])
    assert prediction["excluded"] == 0
    assert set(history) & set(prediction["item_ids"])


def test_server_popularity_fallback(client, local):
    [cold, unknown_only] = client.recommend([
        {"product": "movie", "k": 5},
        {"product": "movie", "k": 5, "user_id": "never-seen", "history": ["movie:nope"]},
    ])
    counts = local.catalogs["movie"].popularity
    assert cold["fallback"] == "popularity"
    assert cold["fallback_reason"] == "no_history"
    assert cold["scores"][0] == counts.max()
    assert cold["scores"] == sorted(cold["scores"], reverse=True)
    assert unknown_only["fallback"] == "popularity"
    assert unknown_only["fallback_reason"] == "unknown_items_only"
    assert unknown_only["unknown_items"] == 1
    assert unknown_only["item_ids"] == cold["item_ids"]


def test_server_v2_matches_v1(client, ml1m_bundle):
    instances = [{"product": "movie", "k": 4, "user_id": ml1m_bundle.known_user},
                 {"product": "movie", "k": 2}]
    assert client.recommend_v2(instances) == client.recommend(instances)


def test_server_v2_response_tensor(server, ml1m_bundle, local):
    response = post(server, "/v2/models/gfm/infer",
                    v2_body({"product": "movie", "k": 3, "user_id": ml1m_bundle.known_user}))
    body = response.json()
    [output] = body["outputs"]
    assert response.status_code == 200
    assert body["model_version"] == local.model_version
    assert output["name"] == "recommendations"
    assert output["datatype"] == "BYTES"
    assert output["shape"] == [1]
    assert len(json.loads(output["data"][0])["item_ids"]) == 3


def test_server_model_metadata(server):
    response = httpx.get(f"{server.url}/v2/models/gfm", timeout=10)
    assert response.status_code == 200
    assert response.json()["inputs"] == [{"name": "instances", "datatype": "BYTES",
                                          "shape": [-1]}]


BAD_V1 = [
    ({"instances": [{"k": 3}]}, "instances[0].product"),
    ({"instances": [{"product": "book"}]}, "instances[0].product"),
    ({"instances": [{"product": "movie", "k": 0}]}, "instances[0].k"),
    ({"instances": [{"product": "movie", "k": 501}]}, "instances[0].k"),
    ({"instances": [{"product": "movie", "k": "ten"}]}, "instances[0].k"),
    ({"instances": [{"product": "movie", "history": "movie:1"}]}, "instances[0].history"),
    ({"instances": [{"product": "movie", "user_id": 3}]}, "instances[0].user_id"),
    ({"instances": [{"product": "movie", "item_types": ["artist"]}]},
     "instances[0].item_types[0]"),
    ({"instances": [{"product": "movie"}] * 65}, "instances"),
    ({"instances": {"product": "movie"}}, "instances"),
    ({"inputs": []}, "instances"),
    ([1, 2], "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_V1)
def test_server_v1_rejects_bad_request(server, body, field):
    response = post(server, "/v1/models/gfm:predict", body)
    assert response.status_code == 400
    assert f"invalid {field}:" in response.json()["error"]


BAD_V2 = [
    (v2_body({"product": "movie", "k": -1}), "instances[0].k"),
    ({"inputs": [{"name": "users", "datatype": "BYTES", "shape": [1], "data": ["{}"]}]},
     "inputs"),
    ({"inputs": [{"name": "instances", "datatype": "INT64", "shape": [1], "data": [1]}]},
     "inputs[0].datatype"),
    ({"inputs": [{"name": "instances", "datatype": "BYTES", "shape": [2],
                  "data": ["{\"product\": \"movie\"}"]}]}, "inputs[0].data"),
    ({"inputs": [{"name": "instances", "datatype": "BYTES", "shape": [1],
                  "data": ["{not json"]}]}, "inputs[0].data[0]"),
    ({"inputs": [{"name": "instances", "shape": [1], "data": ["{}"]}]}, "request"),
]


@pytest.mark.parametrize(("body", "field"), BAD_V2)
def test_server_v2_rejects_bad_request(server, body, field):
    response = post(server, "/v2/models/gfm/infer", body)
    assert response.status_code == 400
    assert f"invalid {field}:" in response.json()["error"]


def test_server_rejects_malformed_bodies(server):
    not_json = post(server, "/v1/models/gfm:predict", b"{\"instances\": [")
    plain_text = post(server, "/v1/models/gfm:predict", b"hello",
                      headers={"content-type": "text/plain"})
    v2_not_json = post(server, "/v2/models/gfm/infer", b"{\"inputs\"")
    assert not_json.status_code == 400
    assert plain_text.status_code == 400
    assert "invalid body: not valid JSON" in plain_text.json()["error"]
    assert v2_not_json.status_code == 400


def invalid_request_series(client) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in client.metrics().splitlines()
            if line.startswith("gfm_recommend_invalid_requests_total{")}


def test_server_counts_malformed_json(server, client):
    key = 'gfm_recommend_invalid_requests_total{field="body",model_name="gfm"}'
    before = invalid_request_series(client).get(key, 0.0)
    for body in (b"{\"instances\": [", b"", b"\xff\xfe{"):
        response = post(server, "/v1/models/gfm:predict", body)
        assert response.status_code == 400
        assert response.json()["error"].startswith("invalid body: not valid JSON (")
    assert invalid_request_series(client)[key] == before + 3


def test_server_bounds_metric_labels(server, client):
    before = invalid_request_series(client)
    for position in range(100):
        post(server, "/v1/models/gfm:predict",
             {"instances": [{"product": "movie", f"junk_{position}": 1}]})
        post(server, "/v1/models/gfm:predict",
             {"instances": [{"product": "movie"}], f"top_{position}": 1})
    for position in range(3):
        post(server, f"/v2/models/m{position}/infer", b'{"inputs": 5}')
    after = invalid_request_series(client)

    other = 'gfm_recommend_invalid_requests_total{field="other",model_name="gfm"}'
    unknown = 'gfm_recommend_invalid_requests_total{field="inputs",model_name="unknown"}'
    assert set(after) - set(before) <= {other, unknown}
    assert after[other] == before.get(other, 0.0) + 200
    assert after[unknown] == before.get(unknown, 0.0) + 3
    assert not any('model_name="m' in series for series in after)


def test_server_logs_rejections_as_warnings(server):
    post(server, "/v1/models/gfm:predict", {"instances": [{"product": "movie", "k": 0}]},
         headers={"content-type": "application/json", "x-request-id": "bad-k-1"})
    post(server, "/v1/models/gfm:predict", b"{", headers={"content-type": "application/json",
                                                         "x-request-id": "bad-json-1"})
    missing = httpx.post(f"{server.url}/v1/models/nothing:predict", json={"instances": []},
                         timeout=10)
    log = server.log()
    [bad_k] = [line for line in log.splitlines() if "bad-k-1" in line]
    [bad_json] = [line for line in log.splitlines() if "bad-json-1" in line]

    assert missing.status_code == 404
    assert "WARNING" in bad_k
    assert "invalid instances[0].k" in bad_k
    assert "WARNING" in bad_json
    assert "invalid body: not valid JSON" in bad_json
    assert "Traceback" not in log


def test_server_huge_k_out_of_range(server):
    response = post(server, "/v1/models/gfm:predict", b'{"instances": [{"product": "movie", '
                                                      b'"k": 1000000000000000000000000000000}]}')
    assert response.status_code == 400
    assert "invalid instances[0].k: 1e+30 is out of range; use 1 to 500" in response.json()[
        "error"]


def test_server_serves_after_bad_requests(server, client):
    for body, _ in BAD_V1:
        post(server, "/v1/models/gfm:predict", body)
    assert client.is_ready()
    [prediction] = client.recommend([{"product": "movie", "k": 2}])
    assert len(prediction["item_ids"]) == 2


def test_client_raises_on_bad_request(client):
    with pytest.raises(RecommendError) as caught:
        client.recommend([{"product": "movie", "k": 0}])
    assert caught.value.status_code == 400
    assert "instances[0].k" in caught.value.message


def test_server_metrics(client, ml1m_bundle):
    client.recommend([{"product": "movie", "k": 2}, {"product": "movie", "k": 2,
                                                      "user_id": ml1m_bundle.known_user},
                      {"product": "movie_alt", "k": 2}])
    with pytest.raises(RecommendError):
        client.recommend([{"product": "movie", "k": 0}])
    text = client.metrics()
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in text.splitlines() if line and not line.startswith("#")}
    instances = samples['gfm_recommend_instances_total{model_name="gfm",product="movie"}']
    fallbacks = samples['gfm_recommend_fallbacks_total{model_name="gfm",product="movie",'
                        'reason="no_history"}']
    invalid = samples['gfm_recommend_invalid_requests_total{field="k",model_name="gfm"}']
    alternative = samples['gfm_recommend_instances_total{model_name="gfm",'
                          'product="movie_alt"}']
    assert instances >= 2
    assert alternative >= 1
    assert fallbacks >= 1
    assert invalid >= 1
    assert 'request_predict_seconds_count{model_name="gfm"}' in samples


def test_cli_recommend(server, ml1m_bundle, capsys):
    code = gfm_main(["recommend", "--url", server.url, "--product", "movie", "--k", "3",
                     "--history", ",".join(ml1m_bundle.recent_items)])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert len(printed["item_ids"]) == 3
    assert printed["history_used"] == len(ml1m_bundle.recent_items)


def test_cli_recommend_v2_and_errors(server, ml1m_bundle, capsys):
    code = gfm_main(["recommend", "--url", server.url, "--product", "movie", "--k", "2",
                     "--user-id", ml1m_bundle.known_user, "--v2"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["known_user"] is True
    assert gfm_main(["recommend", "--url", server.url, "--product", "book"]) == 1
