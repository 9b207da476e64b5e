"""What both clients share: the retry policy, request building and answer parsing.

This module owns :class:`_BaseClient` (configuration, headers, checking an invoke's arguments
and building its request, the task-list query), the rules for when a request may be repeated
and how long to pause, the paths and the parsing of answers into models;
:mod:`ability_gateway._sync_client` and :mod:`ability_gateway._async_client` only add the
sending (and the reading of an ``image_path``). Requests, answers and retries::

    call ──▶ request ──▶ 2xx ──▶ typed model
                 │      ├─ 503 + short Retry-After ──▶ retry after it (up to max_retries) when safe
                 │      └─ 4xx/5xx ──▶ the GatewayError subclass of the error body
                 └─ transport error ──▶ retry (up to max_retries, backing off) when safe,
                                        else APIConnectionError

A retry is safe when the request never reached the gateway (connect errors, pool timeouts)
or when repeating it cannot do anything twice: reads, cancels, and invokes, which always
carry an ``Idempotency-Key`` (the caller's, or a new uuid4 per call) so the gateway answers
a repeated invoke with the task of the first. A 503 with a ``Retry-After`` of at most
``RETRY_AFTER_MAX`` seconds (the gateway's database, or every Coze executor, briefly
unavailable: nothing was done) is waited out and repeated the same way; other HTTP error
answers are never retried: a 429 raises :class:`RateLimitError` with its ``retry_after``
for the caller to decide.
"""

from __future__ import annotations

import base64
import os
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from ability_gateway._errors import APIConnectionError, GatewayError, parse_retry_after
from ability_gateway._models import Ability
from ability_gateway._version import __version__

ModelT = TypeVar("ModelT", bound=BaseModel)

DEFAULT_TIMEOUT = 75.0
"""Seconds per request: above the gateway's longest wait (``Prefer: wait=60``)."""
MAX_SERVER_WAIT = 60.0
"""The gateway waits at most this long for a task before answering 202."""
RETRY_BACKOFF = 0.25
"""First pause between transport retries (seconds); doubles per retry up to RETRY_BACKOFF_MAX."""
RETRY_BACKOFF_MAX = 4.0
RETRY_AFTER_MAX = 10.0
"""A 503 whose Retry-After is at most this (seconds) is retried; a longer one is raised."""

# Failures before the request reached the gateway: safe to repeat any request.
_NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
# Failures after it may have reached the gateway: repeat only what cannot act twice.
_MAYBE_SENT: tuple[type[Exception], ...] = (
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.ReadTimeout,
    httpx.WriteTimeout,
)

_IMAGE_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
)


def image_data_url(data: bytes, *, source: str = "the image") -> str:
    """A ``data:`` URL of an image, its type read from its first bytes."""
    for magic, offset, mime in _IMAGE_SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (
            mime != "image/webp" or data[:4] == b"RIFF"
        ):
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    raise ValueError(f"{source} is not a PNG, JPEG, WebP or GIF image")


def _read_image(path: str | os.PathLike[str]) -> str:
    return image_data_url(Path(path).read_bytes(), source=str(path))


def _path(template: str, *ids: str) -> str:
    return template.format(*(quote(i, safe="") for i in ids))


def _unavailable_pause(response: httpx.Response) -> float | None:
    """How long to wait before repeating a request answered 503 with a short Retry-After."""
    if response.status_code != 503:
        return None
    after = parse_retry_after(response.headers.get("retry-after"))
    if after is None or after > RETRY_AFTER_MAX:
        return None
    return max(after, 0.0)


def _backoff(attempt: int) -> float:
    pause: float = min(RETRY_BACKOFF_MAX, RETRY_BACKOFF * 2**attempt)
    return pause * (0.75 + random.random() / 4)  # jitter: clients that failed together spread


def _retryable(exc: httpx.RequestError, idempotent: bool) -> bool:
    return isinstance(exc, _NOT_SENT) or (idempotent and isinstance(exc, _MAYBE_SENT))


def _parse(model: type[ModelT], response: httpx.Response) -> ModelT:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise GatewayError(
            f"The gateway's answer is not a {model.__name__}: {exc}",
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
        ) from exc


class _AbilityList(BaseModel):
    items: list[Ability]


@dataclass(frozen=True)
class _InvokeArgs:
    """One invoke's arguments as the caller gave them (checked by ``_BaseClient._invoke_args``)."""

    ability_id: str
    inputs: Mapping[str, Any] | None
    image_url: str | None
    image_base64: str | None
    image_path: str | os.PathLike[str] | None
    callback_url: str | None
    callback_headers: Mapping[str, str] | None
    metadata: Mapping[str, Any] | None
    executor_id: str | None
    wait: float | None
    respond_async: bool
    idempotency_key: str | None

    def waiting_at_most(self, timeout: float) -> _InvokeArgs:
        """invoke_and_wait's ask: unless wait or respond_async was given, wait=min(timeout, 60)."""
        if self.wait is None and not self.respond_async:
            return replace(self, wait=min(timeout, MAX_SERVER_WAIT))
        return self


@dataclass(frozen=True)
class _Invoke:
    """An invoke ready to send: the request built from an :class:`_InvokeArgs`."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    timeout: float


class _BaseClient:
    def __init__(
        self,
        base_url: str | None,
        token: str | None,
        *,
        timeout: float,
        max_retries: int,
        headers: Mapping[str, str] | None,
    ) -> None:
        base_url = base_url or os.environ.get("GATEWAY_URL")
        token = token or os.environ.get("GATEWAY_TOKEN")
        if not base_url:
            raise ValueError("No gateway URL: pass base_url= or set GATEWAY_URL")
        if not token:
            raise ValueError("No token: pass token= or set GATEWAY_TOKEN")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": f"ability-gateway-python/{__version__}",
            **(headers or {}),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    @staticmethod
    def _invoke_args(
        ability_id: str,
        inputs: Mapping[str, Any] | None,
        *,
        image_url: str | None,
        image_base64: str | None,
        image_path: str | os.PathLike[str] | None,
        callback_url: str | None,
        callback_headers: Mapping[str, str] | None,
        metadata: Mapping[str, Any] | None,
        executor_id: str | None,
        wait: float | None,
        respond_async: bool,
        idempotency_key: str | None,
    ) -> _InvokeArgs:
        """An invoke's arguments, or :class:`ValueError` for a combination that cannot be sent."""
        given = [image_url, image_base64, image_path]
        if sum(v is not None for v in given) > 1:
            raise ValueError("Give at most one of image_url, image_base64 and image_path")
        if wait is not None and respond_async:
            raise ValueError("Give wait or respond_async, not both")
        if wait is not None and wait < 0:
            raise ValueError("wait must be >= 0 seconds")
        return _InvokeArgs(
            ability_id=ability_id,
            inputs=inputs,
            image_url=image_url,
            image_base64=image_base64,
            image_path=image_path,
            callback_url=callback_url,
            callback_headers=callback_headers,
            metadata=metadata,
            executor_id=executor_id,
            wait=wait,
            respond_async=respond_async,
            idempotency_key=idempotency_key,
        )

    def _invoke_request(self, args: _InvokeArgs, image_data: str | None) -> _Invoke:
        """The request of an invoke; ``image_data`` is the data URL of ``args.image_path``."""
        body: dict[str, Any] = {"inputs": dict(args.inputs or {})}
        optional = {
            "executorId": args.executor_id,
            "imageUrl": args.image_url,
            "imageBase64": args.image_base64 if args.image_base64 is not None else image_data,
            "callbackUrl": args.callback_url,
            "callbackHeaders": (
                dict(args.callback_headers) if args.callback_headers is not None else None
            ),
            "metadata": dict(args.metadata) if args.metadata is not None else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        headers = {"Idempotency-Key": args.idempotency_key or str(uuid.uuid4())}
        timeout = self.timeout
        if args.respond_async:
            headers["Prefer"] = "respond-async"
        elif args.wait is not None:
            wait = args.wait
            # Plain decimal: the gateway reads wait=N[.N] (no exponent), in seconds.
            headers["Prefer"] = "wait=" + (f"{wait:.3f}".rstrip("0").rstrip(".") or "0")
            # The gateway holds the answer up to min(wait, 60) s: don't time out before it.
            timeout = max(timeout, min(wait, MAX_SERVER_WAIT) + 15.0)
        return _Invoke(_path("/api/abilities/{}/invoke", args.ability_id), body, headers, timeout)

    @staticmethod
    def _list_params(
        status: str | None, ability_id: str | None, page_size: int, cursor: str | None
    ) -> dict[str, str | int]:
        params: dict[str, str | int] = {"limit": page_size}
        if status is not None:
            params["status"] = status
        if ability_id is not None:
            params["abilityId"] = ability_id
        if cursor is not None:
            params["cursor"] = cursor
        return params

    def _connection_error(self, exc: httpx.RequestError, attempts: int) -> APIConnectionError:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        detail = str(exc) or type(exc).__name__
        return APIConnectionError(
            f"Could not reach the gateway at {self.base_url}{tries}: {detail}"
        )
