"""Tolerant parsing of Coze responses.

Coze's shapes drift (reference §11): codes come as ints or strings, ``data`` is
usually a JSON string but sometimes plain text, run-history ``output`` is
double-encoded, fields go missing. Nothing here raises on a strange body.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_INT_RE = re.compile(r"^-?[0-9]{1,18}$")  # ASCII digits only, always within 64 bits
_INT64 = 2**63


def as_int(value: Any) -> int | None:
    """An int from an int, a numeric string or a float; None for anything else or "".

    Only values that fit a 64-bit column: a code is stored in the call log."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else None
    if isinstance(value, float) and value.is_integer() and abs(value) < _INT64:
        return int(value)
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value.strip())
    return None


def as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def loads_or_text(value: Any) -> Any:
    """``json.loads`` a string when it holds JSON; otherwise the value unchanged."""
    if not isinstance(value, str | bytes):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def decode_body(body: bytes) -> dict[str, Any] | None:
    """The JSON object of a response body, or None when it is not one."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def envelope_logid(envelope: dict[str, Any]) -> str | None:
    detail = envelope.get("detail")
    if isinstance(detail, dict):
        return as_str(detail.get("logid"))
    return None


def end_output(data: Any) -> Any:
    """The End node's ``output`` from a run's ``data`` (or the decoded run-history ``Output``).

    Handles the "return variables" mode (``{"output": ...}``), the "answer" mode
    (``{"content_type": 1, "data": "..."}``), one more level of JSON-in-a-string,
    and plain text.
    """
    value = loads_or_text(data)
    if isinstance(value, dict):
        if "output" in value:
            return value["output"]
        if "content_type" in value and "data" in value:
            return value["data"]
    return value


def history_end_vars(output: Any) -> Any:
    """The End node's variables from a run history's double-encoded ``output`` (None: not ready)."""
    outer = loads_or_text(output)
    if not isinstance(outer, dict):
        return outer
    inner = outer.get("Output")
    if inner is None or inner == "null":
        return None
    return loads_or_text(inner)
