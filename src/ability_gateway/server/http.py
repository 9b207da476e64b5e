"""HTTP plumbing shared by every router: JSON responses and the request id."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

_request_id: ContextVar[str] = ContextVar("request_id", default="")

# What we accept from a caller's X-Request-ID; anything else is replaced by our own.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def current_request_id() -> str:
    return _request_id.get()


class JSONResponse(Response):
    """A JSON response rendered with orjson (the hot path renders a few KB per request)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class RequestIdMiddleware:
    """Take ``X-Request-ID`` from the caller (or make one) and echo it on the response.

    A pure ASGI middleware: Starlette's BaseHTTPMiddleware costs a task per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID_RE.match(candidate):
                    request_id = candidate
                break
        if not request_id:
            request_id = uuid.uuid4().hex
        token = _request_id.set(request_id)
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = scope.get("state", {}).get("extra_headers") or {}
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [
                    (k.lower().encode(), v.encode())
                    for k, v in extra.items()
                    if k.lower().encode() not in present
                ]
                message["headers"] = [*message.get("headers", []), header, *added]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Unexpected errors still get the uniform body (with this request's id).
            logger.exception("unhandled error")
            if started:
                raise
            body = orjson.dumps(
                {"code": 500, "message": "Internal server error", "requestId": request_id}
            )
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_with_id({"type": "http.response.body", "body": body})
        finally:
            _request_id.reset(token)
