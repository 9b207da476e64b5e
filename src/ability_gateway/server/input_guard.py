"""Control characters in what a caller sends are refused before anything reaches the database.

PostgreSQL text and ``jsonb`` cannot hold NUL (a NUL that reached a query answered 500), and
an id, a URL or a header value holding a control character is never legitimate. So::

    where                                   NUL       other C0 and DEL
    path, query (names and values)          400       400        (they are ids and enums)
    header names and values                 400       400        (HTAB allowed in values)
    JSON body: every string, every key      400       allowed    (free text keeps \\t \\n \\r)
    JSON body: ids and URLs (``ids=``)      400       400
    text from Coze (outputs, messages)      stored escaped, never refused (db.storable_text)

Each refusal is a 400 in the uniform error body naming the field: ``path``, the query
parameter, the header (lower case), or the dotted path inside the body (``metadata.a.0``).
Path, query and headers are checked by :class:`ControlCharacterGuard`, a pure ASGI
middleware; a body is checked by :func:`check_json_body` where it is parsed.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from ability_gateway.server.errors import BadRequest, FieldError, error_body, shorten
from ability_gateway.server.http import JSONResponse

MESSAGE = "The request contains a forbidden control character"
NUL_PROBLEM = "must not contain NUL characters"
NUL_KEY_PROBLEM = "is a key holding a NUL character"
CONTROL_PROBLEM = "must not contain control characters"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")
# Header values: RFC 9110 field-content allows HTAB, nothing else below 0x20, nor DEL.
_HEADER_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_HEADER_NAME_BAD = re.compile(rb"[\x00-\x20\x7f]")


def has_control(text: str) -> bool:
    """Whether ``text`` holds a C0 control character or DEL (ids and URLs may not)."""
    return _CONTROL.search(text) is not None


def printable(text: str) -> str:
    """A caller's name fit for an error message: controls shown as ``\\uXXXX``, shortened."""
    return shorten(_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def _problem(text: str) -> str:
    return NUL_PROBLEM if "\x00" in text else CONTROL_PROBLEM


def request_problems(scope: Scope) -> list[FieldError]:
    """What is wrong with the path, query and headers of an HTTP request (ASGI scope)."""
    errors: list[FieldError] = []
    path: str = scope.get("path", "")
    if has_control(path):
        errors.append(FieldError("path", _problem(path)))
    query: bytes = scope.get("query_string", b"")
    # Most requests carry no query, or one with nothing escaped: skip the parse then.
    if query and (b"%" in query or _CONTROL_BYTES.search(query)):
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if has_control(name):
                errors.append(FieldError(printable(name), _problem(name)))
            elif has_control(value):
                errors.append(FieldError(printable(name), _problem(value)))
    for raw_name, raw_value in scope.get("headers", ()):
        bad_name = _HEADER_NAME_BAD.search(raw_name) is not None
        if bad_name or _HEADER_VALUE_BAD.search(raw_value):
            name = printable(raw_name.decode("latin-1"))
            nul = b"\x00" in (raw_name if bad_name else raw_value)
            errors.append(FieldError(name, NUL_PROBLEM if nul else CONTROL_PROBLEM))
    return errors


class ControlCharacterGuard:
    """Answer 400 to a request whose path, query or headers hold a forbidden control character.

    A pure ASGI middleware (no task per request); it runs inside the request-id middleware,
    so the error body carries the request's id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            errors = request_problems(scope)
            if errors:
                error = BadRequest(MESSAGE, errors)
                body = error_body(400, error.message, **error.extra)
                await JSONResponse(body, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def json_body_problems(data: Any, ids: Collection[str] = ()) -> list[FieldError]:
    """NUL in any string or key of a parsed JSON body, at any depth; any control character in
    the top-level string fields named by ``ids`` (ids and URLs)."""
    errors: list[FieldError] = []
    # Depth first, in document order, without recursion (bodies may nest deeply).
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                errors.append(FieldError(path or "body", NUL_PROBLEM))
            elif path in ids and has_control(value):
                errors.append(FieldError(path, CONTROL_PROBLEM))
        elif isinstance(value, dict):
            children = []
            for key, item in value.items():
                key_text = str(key)
                if "\x00" in key_text:
                    errors.append(FieldError(_join(path, printable(key_text)), NUL_KEY_PROBLEM))
                children.append((item, _join(path, printable(key_text))))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend(
                (item, _join(path, str(i))) for i, item in reversed(list(enumerate(value)))
            )
    return errors


def check_json_body(data: Any, ids: Collection[str] = ()) -> None:
    """Raise a 400 naming every field of a parsed JSON body that :func:`json_body_problems`
    finds fault with."""
    errors = json_body_problems(data, ids)
    if errors:
        raise BadRequest(MESSAGE, errors)
