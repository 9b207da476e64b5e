"""Gateway errors and the one error body every failure is rendered into.

Every error answers ``{"code", "message", "requestId", ...}``. ``code`` is the
HTTP status for the gateway's own errors and Coze's code (e.g. 720701013) for a
workflow failure. Services raise :class:`GatewayError` subclasses; the handlers
installed by :func:`install_error_handlers` render them. Expected failures are
never 500s.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ability_gateway.server.http import JSONResponse, current_request_id

logger = logging.getLogger(__name__)


class GatewayError(Exception):
    """An error with an HTTP status and a public code."""

    status_code: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: int | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.code = code if code is not None else self.status_code
        self.extra = extra or {}
        self.headers = headers
        super().__init__(self.message)


class FieldError(dict[str, str]):
    """One per-field problem: ``{"field": "inputs.url", "problem": "is required"}``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field=field, problem=problem)


MAX_FIELD_ERRORS = 50


class BadRequest(GatewayError):
    status_code = 400
    default_message = "The request is invalid"

    def __init__(self, message: str | None = None, errors: list[FieldError] | None = None) -> None:
        listed = list(errors or [])
        if len(listed) > MAX_FIELD_ERRORS:
            more = len(listed) - MAX_FIELD_ERRORS
            listed = [*listed[:MAX_FIELD_ERRORS], FieldError("…", f"and {more} more problems")]
        super().__init__(message, extra={"errors": listed})


def shorten(text: str, limit: int = 100) -> str:
    """A caller-supplied value, cut to fit in a message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Unauthorized(GatewayError):
    status_code = 401
    default_message = "Missing or invalid bearer token"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="ability-gateway"'})


class Forbidden(GatewayError):
    status_code = 403
    default_message = "The token lacks the scope for this operation"


class NotFound(GatewayError):
    status_code = 404
    default_message = "Not found"


class Conflict(GatewayError):
    status_code = 409
    default_message = "Conflict"


class PayloadTooLarge(GatewayError):
    status_code = 413
    default_message = "The request body is too large"


class NotImplementedYet(GatewayError):
    """A part of the public contract this version of the gateway does not serve yet."""

    status_code = 501
    default_message = "Not implemented"


class ServiceUnavailable(GatewayError):
    status_code = 503
    default_message = "Service unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached (refused, shutting down, dropped, locked past the busy
    timeout): a 503 with ``Retry-After``, since nothing was done and a retry will do it.

    Raised by :class:`~ability_gateway.server.db.Database` only; which failures count is
    decided there (``is_unavailable``). A bad statement or refused data stays a 500.
    """

    default_message = "The database is unavailable; retry shortly"
    retry_after_seconds: ClassVar[int] = 2

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(self.retry_after_seconds)})


class UpstreamError(GatewayError):
    """The workflow failed or Coze could not be reached: HTTP 502 with Coze's code."""

    status_code = 502
    default_message = "Upstream workflow failed"


class UpstreamTimeout(GatewayError):
    status_code = 504
    default_message = "The workflow did not finish within its deadline"


def error_body(code: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "requestId": current_request_id(), **extra}


def _render(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


_PROBLEMS = {
    "missing": "is required",
    "json_invalid": "is not valid JSON",
    "extra_forbidden": "is not a known field",
    "dict_type": "must be an object",
    "string_type": "must be a string",
    "model_attributes_type": "must be a JSON object",
}


def validation_field_errors(errors: Sequence[Any]) -> list[FieldError]:
    """Per-field problems from pydantic's errors, in the uniform shape."""
    result = []
    for err in errors:
        problem = _PROBLEMS.get(err.get("type", ""), err.get("msg", "is invalid"))
        result.append(FieldError(_field_name(tuple(err.get("loc", ()))), problem))
    return result


def install_error_handlers(app: FastAPI) -> None:
    async def on_gateway_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        # Upstream failures are the task's outcome; an outage is logged once by the database.
        quiet = UpstreamError | UpstreamTimeout | DatabaseUnavailable
        if exc.status_code >= 500 and not isinstance(exc, quiet):
            logger.error("request failed: %s", exc.message)
        body = error_body(exc.code, exc.message, **exc.extra)
        return _render(exc.status_code, body, exc.headers)

    async def on_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        error = BadRequest("The request is invalid", validation_field_errors(exc.errors()))
        return _render(400, error_body(400, error.message, **error.extra))

    async def on_http_exception(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
        if exc.status_code == 404:
            message = "No such endpoint"
        return _render(exc.status_code, error_body(exc.status_code, message), exc.headers)

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)


# --- the one error body, as OpenAPI documents it -------------------------------------


class FieldProblem(BaseModel):
    field: str = Field(description="Where: `inputs.url`, `callbackUrl`, `body`, …")
    problem: str


class ErrorBody(BaseModel):
    """The one error body of every failure."""

    model_config = ConfigDict(extra="allow")

    code: int = Field(
        description="The HTTP status for the gateway's own errors; Coze's code (e.g. "
        "720701013) when a workflow failed."
    )
    message: str
    requestId: str = Field(description="This request's X-Request-ID: quote it to the admins.")
    errors: list[FieldProblem] | None = Field(
        None, description="Bad input (400): one entry per field, all at once."
    )
    taskId: str | None = Field(None, description="The task the error is about, when there is one.")
    status: Literal["queued", "running", "succeeded", "failed", "canceled", "timeout"] | None = (
        Field(None, description="That task's status.")
    )
    logId: int | None = Field(
        None, description="The call log row of the upstream call (admins look it up)."
    )
    debugUrl: str | None = Field(None, description="Coze's debug URL of the failed run.")
    quota: Literal["dailyInvocations", "dailyInvocationsByAbility", "mediaBytes"] | None = Field(
        None, description="A quota refusal (429): which quota of the token is used up."
    )
    limit: int | None = Field(
        None, description="That quota's cap (invocations a day, or media bytes)."
    )
    used: int | None = Field(None, description="Media bytes the token has stored (mediaBytes).")
    resetsAt: str | None = Field(
        None,
        description="When a daily quota's window ends (ISO 8601, in GATEWAY_QUOTA_TIMEZONE).",
    )
    abilityId: str | None = Field(None, description="The ability whose own daily quota is used up.")
