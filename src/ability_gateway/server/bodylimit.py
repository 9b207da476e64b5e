"""Request body caps, in one ASGI-level place, per route class.

Every request passes through :class:`BodyLimitMiddleware` before any endpoint, dependency,
signature check or body parser sees it::

    Content-Length over the cap ──► 413 at once; the body is never read
    body arriving (chunked, or within its Content-Length)
        counted per message ──► over the cap: 413, reading stops, the endpoint is told
                                the client went away (``http.disconnect``)

The 413 carries the uniform error body and ``Connection: close``: the server closes the
connection instead of reading the rest, so an oversized upload costs at most the cap (plus
the server's read buffer) in memory, however large it claims or turns out to be.

Route classes are matched on the path; a path no class names gets :data:`DEFAULT_BODY_BYTES`,
so endpoints added later (admin and console forms) are capped without a word of their own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ability_gateway.server.http import current_request_id

MiB = 1024 * 1024

INVOKE_BODY_BYTES = 20 * MiB
"""An invoke body (its inputs may hold an ``imageBase64`` image of up to 10 MB, as base64)."""
NOTICE_BODY_BYTES = 1 * MiB
"""A completion notice of a generation job: a status and a few URLs and texts."""
DEFAULT_BODY_BYTES = 1 * MiB
"""Every other route: JSON and form bodies of the admin API and console."""


@dataclass(frozen=True, slots=True)
class RouteClass:
    name: str
    path: re.Pattern[str]
    max_body_bytes: int


ROUTE_CLASSES: tuple[RouteClass, ...] = (
    RouteClass("invoke", re.compile(r"^/api/abilities/[^/]+/invoke$"), INVOKE_BODY_BYTES),
    RouteClass("provider notice", re.compile(r"^/api/provider_callbacks/"), NOTICE_BODY_BYTES),
)


def body_cap(path: str, classes: Sequence[RouteClass] = ROUTE_CLASSES) -> int:
    """The largest body, in bytes, a request to ``path`` may carry."""
    for route in classes:
        if route.path.match(path):
            return route.max_body_bytes
    return DEFAULT_BODY_BYTES


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _refuse(send: Send, cap: int) -> None:
    body = orjson.dumps(
        {
            "code": 413,
            "message": f"The request body is larger than {cap} bytes",
            "requestId": current_request_id(),
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # Close rather than read (and discard) the rest of the upload.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse bodies over their route class's cap with 413 (see the module docstring).

    Sits inside :class:`~ability_gateway.server.http.RequestIdMiddleware`, so the 413 carries
    the request's id like every other error.
    """

    def __init__(self, app: ASGIApp, classes: Sequence[RouteClass] = ROUTE_CLASSES) -> None:
        self.app = app
        self.classes = tuple(classes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = body_cap(scope["path"], self.classes)
        declared = _declared_length(scope)
        if declared is not None and declared > cap:
            await _refuse(send, cap)
            return
        received = 0
        cut = False  # reading stopped at the cap
        answered = False  # ... and the 413 went out (the endpoint had not answered yet)
        started = False

        async def capped_receive() -> Message:
            nonlocal received, cut, answered
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    cut = True
                    if not started:
                        answered = True
                        await _refuse(send, cap)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 went out instead of whatever the endpoint answers now
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            # The endpoint saw the client "disconnect" mid-body (Starlette's ClientDisconnect,
            # or a parser's error): the 413 already answered it.
            if not answered:
                raise
