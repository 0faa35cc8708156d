"""KFP components of gfm, one module per stage, and their shared helpers.

Each component is a thin shell over a library function. Stage settings
travel as ``config: dict`` parameters, and the KFP SDK (2.17) rejects
``None`` anywhere in a parameter value, both in compiled defaults and in
``kfp.local`` arguments. Settings such as ``window_days: null`` therefore
travel encoded: :func:`encode_parameter` replaces each ``None`` with
:data:`NONE_MARKER`, and a component calls :func:`decode_parameter` on its
``config`` before building its settings dataclass.
"""

from typing import Any

# A mapping no setting uses as a value, so decoding is unambiguous.
NONE_MARKER = {"__gfm_none__": True}


def encode_parameter(value: Any) -> Any:
    """Return ``value`` with every ``None`` inside replaced by :data:`NONE_MARKER`."""
    if value is None:
        return dict(NONE_MARKER)
    if isinstance(value, dict):
        return {key: encode_parameter(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_parameter(item) for item in value]
    return value


def decode_parameter(value: Any) -> Any:
    """Undo :func:`encode_parameter`: every :data:`NONE_MARKER` becomes ``None``."""
    if value == NONE_MARKER:
        return None
    if isinstance(value, dict):
        return {key: decode_parameter(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_parameter(item) for item in value]
    return value
