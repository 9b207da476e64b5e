"""The envelope every simulator answer comes in: JSON bodies with a log id, and the header.

This module owns the ``{"code", "msg", ..., "detail": {"logid"}}`` body of the Coze routes,
its error form, and the middleware that gives every request a log id and every response
(errors included) the ``X-Tt-Logid`` header, which JSON bodies repeat as ``detail.logid``.
Business errors are HTTP 200 with a non-zero ``code``, as in the cloud API.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from ability_gateway.simulator.protocol import new_logid

__all__ = ["JSON_CONTENT_TYPE", "error_reply", "logid_middleware", "reply"]

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def reply(request: web.Request, body: dict[str, Any]) -> web.Response:
    body["detail"] = {"logid": request["logid"]}
    return web.Response(body=orjson.dumps(body), headers={"Content-Type": JSON_CONTENT_TYPE})


def error_reply(request: web.Request, code: int, msg: str) -> web.Response:
    return reply(request, {"code": code, "msg": msg})


@web.middleware
async def logid_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request a log id and every response the ``X-Tt-Logid`` header."""
    logid = new_logid()
    request["logid"] = logid
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Tt-Logid"] = logid
        raise
    response.headers["X-Tt-Logid"] = logid
    return response
