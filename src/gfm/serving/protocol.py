"""Encoding of recommendation instances in V1 and Open Inference Protocol V2.

V1 (``POST /v1/models/{name}:predict``): the body is
``{"instances": [INSTANCE, ...]}`` and the response is
``{"predictions": [PREDICTION, ...], "model_version": str}``.

V2 (``POST /v2/models/{name}/infer``): the request has one input tensor
named ``instances``, datatype ``BYTES``, shape ``[B]`` (``[B, 1]`` is also
accepted), whose elements are the instances as JSON text. The response has
one output tensor ``recommendations``, datatype ``BYTES``, shape ``[B]``,
whose elements are the predictions as JSON text, and sets ``model_version``.
JSON text inside a BYTES tensor keeps variable-length histories and
per-instance ``k`` without padding.

INSTANCE and PREDICTION are described in :mod:`gfm.serving.request` and
:meth:`gfm.serving.recommender.Recommender.recommend`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from gfm.serving.kserve_import import kserve
from gfm.serving.request import InvalidRequestError

V2_INPUT = "instances"
V2_OUTPUT = "recommendations"
V2_DATATYPE = "BYTES"


def decode_v1(payload: Any) -> Any:
    """Return the ``instances`` of a V1 request body.

    Args:
        payload: the decoded JSON body, or raw bytes when the client sent a
            content type other than JSON.

    Raises:
        InvalidRequestError: if the body is not a JSON object with ``instances``.
    """
    if isinstance(payload, (bytes, bytearray)):
        try:
            payload = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidRequestError(
                "body", f"not valid JSON ({error}); send a JSON object with "
                "content-type: application/json"
            ) from None
    if not isinstance(payload, dict):
        raise InvalidRequestError("body", "expected a JSON object with an instances list")
    if "instances" not in payload:
        raise InvalidRequestError("instances", "missing; send {\"instances\": [...]}")
    unknown = sorted(set(payload) - {"instances"})
    if unknown:
        raise InvalidRequestError(unknown[0], "unknown key; a V1 body has only instances")
    return payload["instances"]


def decode_v2(request: kserve.InferRequest) -> list[Any]:
    """Return the instances carried by a V2 request's ``instances`` tensor.

    Raises:
        InvalidRequestError: naming the tensor field that is wrong.
    """
    inputs = request.inputs or []
    if len(inputs) != 1 or inputs[0].name != V2_INPUT:
        names = [i.name for i in inputs]
        raise InvalidRequestError(
            "inputs", f"expected exactly one input tensor named {V2_INPUT!r}, got {names}"
        )
    tensor = inputs[0]
    if tensor.datatype != V2_DATATYPE:
        raise InvalidRequestError(
            "inputs[0].datatype", f"expected {V2_DATATYPE}, got {tensor.datatype}"
        )
    shape = list(tensor.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise InvalidRequestError(
            "inputs[0].shape", f"expected [batch] or [batch, 1], got {shape}"
        )

    elements = _tensor_elements(tensor)
    if len(elements) != shape[0]:
        raise InvalidRequestError(
            "inputs[0].data", f"has {len(elements)} elements but the shape declares {shape[0]}"
        )
    instances = []
    for position, element in enumerate(elements):
        if isinstance(element, (bytes, bytearray)):
            try:
                element = bytes(element).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequestError(
                    f"inputs[0].data[{position}]", "is not UTF-8 text"
                ) from None
        if not isinstance(element, str):
            raise InvalidRequestError(
                f"inputs[0].data[{position}]", "expected a JSON string of one instance"
            )
        try:
            instances.append(json.loads(element))
        except json.JSONDecodeError as error:
            raise InvalidRequestError(
                f"inputs[0].data[{position}]", f"not valid JSON: {error}"
            ) from None
    return instances


def _tensor_elements(tensor: kserve.InferInput) -> list[Any]:
    data = tensor.data
    if data is None:
        # Binary tensor extension: the elements arrive as raw bytes.
        try:
            return list(np.asarray(tensor.as_numpy()).reshape(-1))
        except (ValueError, kserve.errors.InvalidInput) as error:
            raise InvalidRequestError("inputs[0]", f"cannot decode BYTES data: {error}") from None
    if isinstance(data, np.ndarray):
        return list(data.reshape(-1))
    flat: list[Any] = []
    for element in data:
        if isinstance(element, list):
            flat.extend(element)
        else:
            flat.append(element)
    return flat


def encode_v1(predictions: list[dict[str, Any]], model_version: str) -> dict[str, Any]:
    """Build the V1 response body."""
    return {"predictions": predictions, "model_version": model_version}


def encode_v2(
    predictions: list[dict[str, Any]],
    model_name: str,
    model_version: str,
    request_id: str | None,
) -> kserve.InferResponse:
    """Build the V2 response: one ``recommendations`` BYTES tensor of JSON texts.

    Raises:
        ValueError: if a prediction contains NaN or infinity, which JSON
            cannot represent, so the server returns 500 instead of invalid JSON.
    """
    texts = [json.dumps(p, separators=(",", ":"), allow_nan=False) for p in predictions]
    output = kserve.InferOutput(
        name=V2_OUTPUT, shape=[len(texts)], datatype=V2_DATATYPE, data=texts
    )
    return kserve.InferResponse(
        response_id=request_id or "",
        model_name=model_name,
        model_version=model_version,
        infer_outputs=[output],
    )
