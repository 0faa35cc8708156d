"""KFP components of gfm, one module per stage, and their shared helpers.

Each component is a thin shell over a library function. Stage settings
travel as ``config: dict`` parameters, and KFP changes them on the way: the
SDK (2.17) rejects ``None`` anywhere in a parameter value, and every
number passes through a protobuf ``Struct``, so an int such as ``seed: 0``
arrives as ``0.0``. The pipeline therefore sends each settings mapping as
JSON text inside a one-key mapping (:func:`encode_parameter`), and a
component calls :func:`decode_parameter` on its ``config`` before building
its settings dataclass. A plain mapping passes through unchanged, so
components still take hand-written settings in tests.
"""

import json
from typing import Any

# The one key of an encoded settings mapping.
ENCODED_KEY = "__gfm_json__"


def encode_parameter(settings: dict[str, Any]) -> dict[str, str]:
    """Return ``settings`` as ``{ENCODED_KEY: <JSON text>}``.

    Raises:
        TypeError: if a value cannot be written as JSON.
    """
    if is_encoded(settings):
        return dict(settings)
    return {ENCODED_KEY: json.dumps(settings, sort_keys=True)}


def is_encoded(value: Any) -> bool:
    """Return whether ``value`` is a mapping made by :func:`encode_parameter`."""
    return isinstance(value, dict) and set(value) == {ENCODED_KEY}


def decode_parameter(value: Any) -> Any:
    """Undo :func:`encode_parameter`; any other value is returned unchanged.

    Raises:
        ValueError: if the encoded text is not valid JSON.
    """
    if not is_encoded(value):
        return value
    return json.loads(value[ENCODED_KEY])
