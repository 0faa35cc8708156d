"""A small HTTP client of the recommendation server (V1 and V2).

Example::

    with RecommendClient("http://127.0.0.1:8080") as client:
        client.wait_ready(timeout_s=60)
        [prediction] = client.recommend(
            [{"product": "movie", "k": 10, "history": ["movie:1193"]}]
        )
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx

logger = logging.getLogger(__name__)

JSON_HEADERS = {"content-type": "application/json"}


class RecommendError(RuntimeError):
    """An error status returned by the server.

    Args:
        status_code: the HTTP status.
        message: the server's ``error`` text, or the raw body.
    """

    def __init__(self, status_code: int, message: str):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message


class RecommendClient:
    """Client of one model on a recommendation server.

    Args:
        base_url: server address, for example ``http://127.0.0.1:8080``.
        model_name: the model name in request paths.
        timeout_s: timeout of each HTTP request, in seconds.
    """

    def __init__(self, base_url: str, model_name: str = "gfm", timeout_s: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def __enter__(self) -> RecommendClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def is_ready(self) -> bool:
        """Return whether the model is loaded and ready (``GET /v1/models/{name}``)."""
        try:
            response = self._http.get(f"/v1/models/{self.model_name}")
        except httpx.TransportError:
            return False
        return response.status_code == 200 and bool(response.json().get("ready"))

    def wait_ready(self, timeout_s: float = 60.0, interval_s: float = 0.25) -> None:
        """Poll until the model is ready.

        Raises:
            TimeoutError: if it is not ready after ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        while not self.is_ready():
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"model {self.model_name} at {self.base_url} was not ready after "
                    f"{timeout_s:.0f} s; check the server log for the load error"
                )
            time.sleep(interval_s)

    def recommend(self, instances: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send instances with the V1 protocol and return their predictions.

        Raises:
            RecommendError: on an error status (400 names the invalid field).
        """
        body = self.predict_v1({"instances": list(instances)})
        return body["predictions"]

    def predict_v1(self, body: Any) -> dict[str, Any]:
        """POST a raw V1 body to ``:predict`` and return the decoded response.

        Raises:
            RecommendError: on an error status.
        """
        response = self._http.post(f"/v1/models/{self.model_name}:predict",
                                   content=json.dumps(body), headers=JSON_HEADERS)
        return _decoded(response)

    def recommend_v2(self, instances: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send instances with the V2 protocol and return their predictions.

        The instances travel as JSON texts in the ``instances`` BYTES tensor
        (see :mod:`gfm.serving.protocol`).

        Raises:
            RecommendError: on an error status.
        """
        texts = [json.dumps(instance) for instance in instances]
        body = {"inputs": [{"name": "instances", "shape": [len(texts)],
                            "datatype": "BYTES", "data": texts}]}
        response = self.infer_v2(body)
        outputs = {output["name"]: output for output in response["outputs"]}
        return [json.loads(text) for text in outputs["recommendations"]["data"]]

    def infer_v2(self, body: Any) -> dict[str, Any]:
        """POST a raw V2 body to ``/infer`` and return the decoded response.

        Raises:
            RecommendError: on an error status.
        """
        response = self._http.post(f"/v2/models/{self.model_name}/infer",
                                   content=json.dumps(body), headers=JSON_HEADERS)
        return _decoded(response)

    def metrics(self) -> str:
        """Return the Prometheus text of ``/metrics``."""
        response = self._http.get("/metrics")
        response.raise_for_status()
        return response.text


def _decoded(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except (json.JSONDecodeError, AttributeError):
            message = response.text
        raise RecommendError(response.status_code, str(message))
    return response.json()
