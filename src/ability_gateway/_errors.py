"""The SDK's exceptions: one per kind of error answer, all under :class:`GatewayError`.

Every error answer of the gateway has one body, ``{"code", "message", "requestId", ...}``;
the exceptions carry its fields as attributes (``body`` keeps the whole of it)::

    GatewayError
    ├── BadRequestError          400  errors: [{field, problem}]
    ├── AuthenticationError      401
    ├── PermissionDeniedError    403
    ├── NotFoundError            404
    ├── ConflictError            409  task_id, status
    ├── PayloadTooLargeError     413
    ├── RateLimitError           429  retry_after (seconds, from the Retry-After header)
    ├── UpstreamError            502  code (Coze's, e.g. 720701013), debug_url, task_id, log_id
    ├── ServiceUnavailableError  503
    ├── GatewayTimeoutError      504  task_id, log_id (also raised by the SDK when a wait ends)
    ├── APIConnectionError       the gateway could not be reached (after the retries)
    └── CallbackVerificationError  a callback whose signature or timestamp does not check out

Any other error status raises :class:`GatewayError` itself.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any, TypedDict

import httpx

__all__ = [
    "APIConnectionError",
    "AuthenticationError",
    "BadRequestError",
    "CallbackVerificationError",
    "ConflictError",
    "FieldError",
    "GatewayError",
    "GatewayTimeoutError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UpstreamError",
    "error_from_body",
    "error_from_response",
    "parse_retry_after",
]


class FieldError(TypedDict):
    """One problem of a 400 answer: ``{"field": "inputs.url", "problem": "is required"}``."""

    field: str
    problem: str


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


class GatewayError(Exception):
    """An error answer of the gateway (or a failure to get one).

    ``status_code`` is the HTTP status (``None`` when no answer came, or for errors the SDK
    raises itself); ``code`` is the body's ``code``: the HTTP status for the gateway's own
    errors, Coze's code for a failed workflow.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.body: dict[str, Any] = dict(body) if body is not None else {}

    def __str__(self) -> str:
        details = []
        if self.status_code is not None:
            details.append(f"HTTP {self.status_code}")
        if self.code is not None and self.code != self.status_code:
            details.append(f"code {self.code}")
        details.extend(f"{name} {value}" for name, value in self._details())
        if self.request_id:
            details.append(f"requestId {self.request_id}")
        return f"{self.message} ({', '.join(details)})" if details else self.message

    def _details(self) -> list[tuple[str, object]]:
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r})"


class BadRequestError(GatewayError):
    """400: the request is invalid; ``errors`` lists each problem."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        raw = self.body.get("errors")
        self.errors: list[FieldError] = [
            FieldError(field=str(item.get("field", "")), problem=str(item.get("problem", "")))
            for item in (raw if isinstance(raw, list) else [])
            if isinstance(item, dict)
        ]

    def __str__(self) -> str:
        text = super().__str__()
        if self.errors:
            problems = "; ".join(f"{e['field']} {e['problem']}" for e in self.errors)
            text = f"{text}: {problems}"
        return text


class AuthenticationError(GatewayError):
    """401: the token is missing, malformed, unknown, revoked or expired."""


class PermissionDeniedError(GatewayError):
    """403: the token lacks the scope for this operation."""


class NotFoundError(GatewayError):
    """404: no such ability, task (or not yours), or route."""


class _TaskError(GatewayError):
    """An error about one task: ``task_id``, ``log_id``, ``status`` from the body."""

    def __init__(
        self,
        message: str,
        *,
        task_id: str | None = None,
        log_id: int | None = None,
        status: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.task_id = task_id if task_id is not None else _str_or_none(self.body.get("taskId"))
        self.log_id = log_id if log_id is not None else _int_or_none(self.body.get("logId"))
        self.status = status if status is not None else _str_or_none(self.body.get("status"))

    def _details(self) -> list[tuple[str, object]]:
        details: list[tuple[str, object]] = []
        if self.task_id:
            details.append(("task", self.task_id))
        if self.status:
            details.append(("status", self.status))
        return details


class ConflictError(_TaskError):
    """409: cancel of a finished task, an ``Idempotency-Key`` reused with another body, or a
    task canceled while the call waited. ``task_id`` and ``status`` say which task and how
    it stands."""


class PayloadTooLargeError(GatewayError):
    """413: the body (20 MB) or an ``imageBase64`` image (the gateway's limit) is too large."""


class RateLimitError(GatewayError):
    """429: too many requests; ``retry_after`` is when to try again (seconds), if said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def _details(self) -> list[tuple[str, object]]:
        return [] if self.retry_after is None else [("retry after", f"{self.retry_after:g} s")]


class UpstreamError(_TaskError):
    """502: the workflow or its generation job failed, or Coze could not be reached.

    ``code`` is Coze's code (e.g. 720701013) when Coze gave one, else 502; ``debug_url``
    opens the run in Coze.
    """

    def __init__(self, message: str, *, debug_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.debug_url = (
            debug_url if debug_url is not None else _str_or_none(self.body.get("debugUrl"))
        )


class ServiceUnavailableError(GatewayError):
    """503: the gateway cannot serve this now (e.g. no Coze executor configured)."""


class GatewayTimeoutError(_TaskError):
    """504: the task did not finish within its ability's deadline (``status == "timeout"``).

    Also raised by :meth:`Client.wait_for_task` when its own ``timeout`` passes first: then
    ``status_code`` is ``None`` and ``status`` is the task's last seen status; the task goes on.
    """


class APIConnectionError(GatewayError):
    """The gateway could not be reached or did not answer (after the retries).

    The underlying :mod:`httpx` exception is the ``__cause__``.
    """


class CallbackVerificationError(GatewayError):
    """A callback's signature, timestamp or body does not check out: answer it with 4xx."""


_BY_STATUS: dict[int, type[GatewayError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitError,
    502: UpstreamError,
    503: ServiceUnavailableError,
    504: GatewayTimeoutError,
}


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if headers is None:
        return None
    if isinstance(headers, httpx.Headers):
        value: str | None = headers.get(name)
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or ``None``."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def error_from_body(
    status_code: int,
    body: Mapping[str, Any] | None,
    *,
    headers: Mapping[str, str] | None = None,
    fallback_message: str | None = None,
) -> GatewayError:
    """The exception for an error answer with this status and (uniform) body."""
    data: Mapping[str, Any] = body or {}
    message = data.get("message")
    if not isinstance(message, str) or not message:
        message = fallback_message or f"The gateway answered HTTP {status_code}"
    code = _int_or_none(data.get("code"))
    kwargs: dict[str, Any] = {
        "status_code": status_code,
        "code": code if code is not None else status_code,
        "request_id": _str_or_none(data.get("requestId")),
        "body": data,
    }
    cls = _BY_STATUS.get(status_code, GatewayError)
    if cls is RateLimitError:
        retry_after = parse_retry_after(_header(headers, "retry-after"))
        return RateLimitError(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)


def error_from_response(response: httpx.Response) -> GatewayError:
    """The exception for an error answer of the gateway (any status >= 400)."""
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # Not the gateway's body (a proxy's HTML page, an empty answer): keep a hint of it.
        excerpt = response.text.strip()[:200] if response.content else ""
        reason = response.reason_phrase or "error"
        fallback = f"HTTP {response.status_code} {reason}" + (f": {excerpt}" if excerpt else "")
        request_id = response.headers.get("x-request-id")
        return error_from_body(
            response.status_code,
            {"requestId": request_id} if request_id else None,
            headers=response.headers,
            fallback_message=fallback,
        )
    if "requestId" not in body and "x-request-id" in response.headers:
        body = {**body, "requestId": response.headers["x-request-id"]}
    return error_from_body(response.status_code, body, headers=response.headers)
