"""The gateway's clients: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Both have the same methods with the same arguments; the async ones are awaited (and
``list_tasks`` is iterated with ``async for``). Requests, answers and retries::

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

import asyncio
import base64
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from ability_gateway._errors import (
    APIConnectionError,
    ConflictError,
    GatewayError,
    GatewayTimeoutError,
    RateLimitError,
    error_from_body,
    error_from_response,
    parse_retry_after,
)
from ability_gateway._models import (
    Ability,
    Deliveries,
    InvokeResult,
    Task,
    TaskPage,
)
from ability_gateway._version import __version__

__all__ = ["AsyncClient", "Client"]

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
POLL_GROWTH = 1.5
"""wait_for_task's pause grows by this factor per poll, from poll_interval to max_interval."""

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


def _parse(model: type[ModelT], response: httpx.Response) -> ModelT:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise GatewayError(
            f"The gateway's answer is not a {model.__name__}: {exc}",
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
        ) from exc


def _task_error(task: Task) -> GatewayError:
    """What a sync invoke raises for this ended task (the gateway's raise_for_task)."""
    error = task.error_payload or {}
    code = error.get("code")
    status_code = {"timeout": 504, "canceled": 409}.get(task.status, 502)
    body = {
        # A failed task keeps Coze's code (e.g. 720701013) when it had one.
        "code": code if task.status == "failed" and isinstance(code, int) else status_code,
        "message": str(error.get("message") or f"The task {task.status}"),
        "requestId": task.request_id,
        "taskId": task.id,
        "logId": task.log_id,
        "debugUrl": error.get("debugUrl"),
        "status": task.status,
    }
    return error_from_body(status_code, body)


def _result_from_task(task: Task, accepted: InvokeResult) -> InvokeResult:
    """The finished task in the shape of a 200 answer (``duration_ms`` is not known)."""
    payload = dict(task.result_payload or {})
    metadata = payload.get("metadata") or {**accepted.metadata, "taskId": task.id}
    return InvokeResult.model_validate(
        {
            **payload,
            "abilityId": task.ability_id,
            "provider": accepted.provider,
            "status": task.status,
            "requestId": task.request_id,
            "logId": task.log_id,
            "durationMs": None,
            "metadata": metadata,
        }
    )


@dataclass(frozen=True)
class _Invoke:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    timeout: float


@dataclass
class _Poll:
    """wait_for_task's schedule: growing pauses, Retry-After hints, one overall deadline."""

    task_id: str
    timeout: float
    delay: float
    max_interval: float
    deadline: float

    @classmethod
    def start(
        cls, task_id: str, timeout: float, poll_interval: float, max_interval: float
    ) -> _Poll:
        if timeout < 0 or poll_interval <= 0 or max_interval <= 0:
            raise ValueError("timeout must be >= 0 and the intervals > 0")
        return cls(
            task_id,
            timeout,
            min(poll_interval, max_interval),
            max_interval,
            time.monotonic() + timeout,
        )

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def pause_after(self, task: Task, hint: float | None) -> float:
        """The pause before the next poll, or raise if the deadline has passed."""
        remaining = self.remaining()
        if remaining <= 0:
            raise GatewayTimeoutError(
                f"Task {self.task_id} is still {task.status} after {self.timeout:g} s "
                "(it goes on; wait again or cancel it)",
                task_id=self.task_id,
                log_id=task.log_id,
                status=task.status,
                request_id=task.request_id,
            )
        pause = min(hint if hint is not None else self.delay, self.max_interval, remaining)
        self.delay = min(self.delay * POLL_GROWTH, self.max_interval)
        return pause

    def pause_after_rate_limit(self, error: RateLimitError) -> float:
        """A 429 while polling: wait as told if the deadline allows, else raise it."""
        pause = error.retry_after if error.retry_after is not None else self.delay
        if pause > self.remaining():
            raise error
        return pause

    def pause_after_blip(self, error: Exception) -> float:
        """A connection error or 5xx while polling: try again later if time remains."""
        pause = min(self.delay, self.max_interval)
        if pause >= self.remaining():
            raise error
        self.delay = min(self.delay * 1.5, self.max_interval)
        return pause


def _transient(error: Exception) -> bool:
    """Worth polling again: no connection, or the gateway itself in trouble (5xx)."""
    if isinstance(error, APIConnectionError):
        return True
    status = getattr(error, "status_code", None)
    return isinstance(status, int) and status >= 500


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

    def _invoke_request(
        self,
        ability_id: str,
        inputs: Mapping[str, Any] | None,
        *,
        image_url: str | None,
        image_base64: str | None,
        image_data: str | None,
        callback_url: str | None,
        callback_headers: Mapping[str, str] | None,
        metadata: Mapping[str, Any] | None,
        executor_id: str | None,
        wait: float | None,
        respond_async: bool,
        idempotency_key: str | None,
    ) -> _Invoke:
        body: dict[str, Any] = {"inputs": dict(inputs or {})}
        optional = {
            "executorId": executor_id,
            "imageUrl": image_url,
            "imageBase64": image_base64 if image_base64 is not None else image_data,
            "callbackUrl": callback_url,
            "callbackHeaders": dict(callback_headers) if callback_headers is not None else None,
            "metadata": dict(metadata) if metadata is not None else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        timeout = self.timeout
        if respond_async:
            headers["Prefer"] = "respond-async"
        elif wait is not None:
            # Plain decimal: the gateway reads wait=N[.N] (no exponent), in seconds.
            headers["Prefer"] = "wait=" + (f"{wait:.3f}".rstrip("0").rstrip(".") or "0")
            # The gateway holds the answer up to min(wait, 60) s: don't time out before it.
            timeout = max(timeout, min(wait, MAX_SERVER_WAIT) + 15.0)
        return _Invoke(_path("/api/abilities/{}/invoke", ability_id), body, headers, timeout)

    @staticmethod
    def _check_invoke_args(
        image_url: str | None,
        image_base64: str | None,
        image_path: str | os.PathLike[str] | None,
        wait: float | None,
        respond_async: bool,
    ) -> None:
        given = [image_url, image_base64, image_path]
        if sum(v is not None for v in given) > 1:
            raise ValueError("Give at most one of image_url, image_base64 and image_path")
        if wait is not None and respond_async:
            raise ValueError("Give wait or respond_async, not both")
        if wait is not None and wait < 0:
            raise ValueError("wait must be >= 0 seconds")

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


def _retryable(exc: httpx.RequestError, idempotent: bool) -> bool:
    return isinstance(exc, _NOT_SENT) or (idempotent and isinstance(exc, _MAYBE_SENT))


class Client(_BaseClient):
    """A blocking client of the gateway.

    ``base_url`` and ``token`` default to the ``GATEWAY_URL`` and ``GATEWAY_TOKEN``
    environment variables. ``timeout`` is per request (seconds); ``max_retries`` how many
    times a request that failed in transport is repeated when that is safe. ``transport``
    replaces httpx's (tests, proxies); ``headers`` are added to every request. Use it as a
    context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout=timeout, max_retries=max_retries, headers=headers)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    # --- transport ----------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[httpx.Response, bool]:
        """The answer (any status), and whether an earlier try may have reached the gateway."""
        attempt = 0
        maybe_sent = False
        while True:
            try:
                response = self._http.request(
                    method,
                    path,
                    params=params,
                    json=json,
                    headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.RequestError as exc:
                if attempt >= self.max_retries or not _retryable(exc, idempotent):
                    raise self._connection_error(exc, attempt + 1) from exc
                maybe_sent = maybe_sent or isinstance(exc, _MAYBE_SENT)
                time.sleep(_backoff(attempt))
                attempt += 1
                continue
            pause = _unavailable_pause(response) if idempotent else None
            if pause is None or attempt >= self.max_retries:
                return response, maybe_sent
            response.close()
            time.sleep(pause)
            attempt += 1

    def _request(
        self, method: str, path: str, *, idempotent: bool, **kwargs: Any
    ) -> httpx.Response:
        response, _ = self._send(method, path, idempotent=idempotent, **kwargs)
        if response.is_error:
            raise error_from_response(response)
        return response

    # --- abilities ----------------------------------------------------------------------

    def list_abilities(self) -> list[Ability]:
        """The catalog: every ability with its input schema (spec §3.1.1)."""
        response = self._request("GET", "/api/abilities", idempotent=True)
        return _parse(_AbilityList, response).items

    def get_ability(self, ability_id: str) -> Ability:
        """One ability (spec §3.1.2); :class:`NotFoundError` if there is none."""
        response = self._request("GET", _path("/api/abilities/{}", ability_id), idempotent=True)
        return _parse(Ability, response)

    # --- invoking -----------------------------------------------------------------------

    def invoke_ability(
        self,
        ability_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        image_url: str | None = None,
        image_base64: str | None = None,
        image_path: str | os.PathLike[str] | None = None,
        callback_url: str | None = None,
        callback_headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        executor_id: str | None = None,
        wait: float | None = None,
        respond_async: bool = False,
        idempotency_key: str | None = None,
    ) -> InvokeResult:
        """Invoke an ability (spec §3.2); every invocation creates a task (``result.task_id``).

        Returns the result when the task finished within the gateway's wait (HTTP 200) and
        the accepted task otherwise (HTTP 202, ``status`` queued or running: follow it with
        :meth:`wait_for_task`, or use :meth:`invoke_and_wait`). A failed task raises
        :class:`UpstreamError`, a timed-out one :class:`GatewayTimeoutError`.

        Give the image at most once: ``image_url``, ``image_base64`` (a data URL) or
        ``image_path`` (a PNG, JPEG, WebP or GIF file, sent as a data URL). ``wait`` asks the
        gateway to wait up to that many seconds (at most 60) before answering 202;
        ``respond_async`` asks for a 202 at once. ``idempotency_key`` makes repeats of this
        call get the same task; without one, a key is made per call so that the SDK's own
        retries never run an ability twice.
        """
        self._check_invoke_args(image_url, image_base64, image_path, wait, respond_async)
        result, _ = self._invoke(
            self._invoke_request(
                ability_id,
                inputs,
                image_url=image_url,
                image_base64=image_base64,
                image_data=_read_image(image_path) if image_path is not None else None,
                callback_url=callback_url,
                callback_headers=callback_headers,
                metadata=metadata,
                executor_id=executor_id,
                wait=wait,
                respond_async=respond_async,
                idempotency_key=idempotency_key,
            )
        )
        return result

    def _invoke(self, call: _Invoke) -> tuple[InvokeResult, float | None]:
        response = self._request(
            "POST",
            call.path,
            idempotent=True,  # the Idempotency-Key makes a repeat return the same task
            json=call.body,
            headers=call.headers,
            timeout=call.timeout,
        )
        return _parse(InvokeResult, response), parse_retry_after(
            response.headers.get("retry-after")
        )

    def invoke_and_wait(
        self,
        ability_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_interval: float = 10.0,
        image_url: str | None = None,
        image_base64: str | None = None,
        image_path: str | os.PathLike[str] | None = None,
        callback_url: str | None = None,
        callback_headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        executor_id: str | None = None,
        wait: float | None = None,
        respond_async: bool = False,
        idempotency_key: str | None = None,
    ) -> InvokeResult:
        """Invoke an ability and return its finished result, waiting at most ``timeout`` s.

        A 202 is followed by :meth:`wait_for_task` (first poll after the answer's
        ``Retry-After``, at most ``max_interval``). The outcome is the same as if the
        gateway had answered at once: the result, or :class:`UpstreamError` (failed),
        :class:`GatewayTimeoutError` (timeout: with ``status_code`` ``None`` if it is this
        call's ``timeout`` that passed) or :class:`ConflictError` (canceled), with
        ``task_id``. Unless ``wait`` or ``respond_async`` is given, the gateway is asked to
        hold the answer up to 60 s (``Prefer: wait``), which saves polls for quick abilities.
        """
        self._check_invoke_args(image_url, image_base64, image_path, wait, respond_async)
        started = time.monotonic()
        if wait is None and not respond_async:
            wait = min(timeout, MAX_SERVER_WAIT)
        accepted, retry_after = self._invoke(
            self._invoke_request(
                ability_id,
                inputs,
                image_url=image_url,
                image_base64=image_base64,
                image_data=_read_image(image_path) if image_path is not None else None,
                callback_url=callback_url,
                callback_headers=callback_headers,
                metadata=metadata,
                executor_id=executor_id,
                wait=wait,
                respond_async=respond_async,
                idempotency_key=idempotency_key,
            )
        )
        if accepted.is_terminal:
            return accepted
        task = self._wait(
            _Poll.start(
                accepted.task_id,
                max(0.0, timeout - (time.monotonic() - started)),
                poll_interval,
                max_interval,
            ),
            first_pause=retry_after,
        )
        if task.status != "succeeded":
            raise _task_error(task)
        return _result_from_task(task, accepted)

    # --- tasks --------------------------------------------------------------------------

    def _fetch_task(self, task_id: str) -> tuple[Task, float | None]:
        response = self._request("GET", _path("/api/ability_tasks/{}", task_id), idempotent=True)
        return _parse(Task, response), parse_retry_after(response.headers.get("retry-after"))

    def get_task_status(self, task_id: str) -> Task:
        """A task (spec §3.3); :class:`NotFoundError` if it is unknown or another token's."""
        return self._fetch_task(task_id)[0]

    get_task = get_task_status

    def cancel_task(self, task_id: str) -> Task:
        """Cancel a queued or running task; it ends ``canceled``.

        :class:`ConflictError` if it had already ended (``status`` says how).
        """
        response, maybe_sent = self._send(
            "POST", _path("/api/ability_tasks/{}/cancel", task_id), idempotent=True
        )
        if response.is_error:
            error = error_from_response(response)
            if maybe_sent and isinstance(error, ConflictError) and error.status == "canceled":
                return self.get_task_status(task_id)  # our earlier try canceled it
            raise error
        return _parse(Task, response)

    def list_tasks_page(
        self,
        *,
        status: str | None = None,
        ability_id: str | None = None,
        page_size: int = 20,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of the token's tasks, newest first; pass ``next_cursor`` as ``cursor``."""
        response = self._request(
            "GET",
            "/api/ability_tasks",
            idempotent=True,
            params=self._list_params(status, ability_id, page_size, cursor),
        )
        return _parse(TaskPage, response)

    def list_tasks(
        self, *, status: str | None = None, ability_id: str | None = None, page_size: int = 20
    ) -> Iterator[Task]:
        """Every task of the token, newest first, fetched ``page_size`` at a time as iterated."""
        cursor: str | None = None
        while True:
            page = self.list_tasks_page(
                status=status, ability_id=ability_id, page_size=page_size, cursor=cursor
            )
            yield from page.items
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    def wait_for_task(
        self,
        task_id: str,
        *,
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_interval: float = 10.0,
    ) -> Task:
        """Poll a task until it ends and return it, whatever its status.

        Pauses start at ``poll_interval`` and grow by half each poll up to ``max_interval``;
        a ``Retry-After`` on an answer sets the next pause (at most ``max_interval``), and a
        429 is waited out as told. If ``timeout`` seconds pass first,
        :class:`GatewayTimeoutError` (``status_code`` ``None``, ``task_id`` and the last
        ``status`` set): the task goes on.
        """
        return self._wait(_Poll.start(task_id, timeout, poll_interval, max_interval))

    def _wait(self, poll: _Poll, *, first_pause: float | None = None) -> Task:
        if first_pause is not None:
            time.sleep(max(0.0, min(first_pause, poll.max_interval, poll.remaining())))
        while True:
            try:
                task, hint = self._fetch_task(poll.task_id)
            except RateLimitError as error:
                time.sleep(poll.pause_after_rate_limit(error))
                continue
            except (APIConnectionError, GatewayError) as error:
                # A blip while polling (the task goes on regardless): poll again while time
                # remains. Answers about the request itself (4xx) are final.
                if not _transient(error):
                    raise
                time.sleep(poll.pause_after_blip(error))
                continue
            if task.is_terminal:
                return task
            time.sleep(poll.pause_after(task, hint))

    # --- callbacks ----------------------------------------------------------------------

    def get_callbacks(self, task_id: str) -> Deliveries:
        """The task's callback delivery (``None`` without a ``callback_url``) and attempts."""
        response = self._request(
            "GET", _path("/api/ability_tasks/{}/callbacks", task_id), idempotent=True
        )
        return _parse(Deliveries, response)

    def redeliver_callback(self, task_id: str) -> Deliveries:
        """Send the task's callback once more now (same ``webhook-id``, one attempt)."""
        response = self._request(
            "POST", _path("/api/ability_tasks/{}/callbacks/redeliver", task_id), idempotent=False
        )
        return _parse(Deliveries, response)


class AsyncClient(_BaseClient):
    """The asyncio twin of :class:`Client`: the same methods, awaited.

    ``list_tasks`` is an async iterator (``async for task in client.list_tasks()``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout=timeout, max_retries=max_retries, headers=headers)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    # --- transport ----------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[httpx.Response, bool]:
        attempt = 0
        maybe_sent = False
        while True:
            try:
                response = await self._http.request(
                    method,
                    path,
                    params=params,
                    json=json,
                    headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.RequestError as exc:
                if attempt >= self.max_retries or not _retryable(exc, idempotent):
                    raise self._connection_error(exc, attempt + 1) from exc
                maybe_sent = maybe_sent or isinstance(exc, _MAYBE_SENT)
                await asyncio.sleep(_backoff(attempt))
                attempt += 1
                continue
            pause = _unavailable_pause(response) if idempotent else None
            if pause is None or attempt >= self.max_retries:
                return response, maybe_sent
            await response.aclose()
            await asyncio.sleep(pause)
            attempt += 1

    async def _request(
        self, method: str, path: str, *, idempotent: bool, **kwargs: Any
    ) -> httpx.Response:
        response, _ = await self._send(method, path, idempotent=idempotent, **kwargs)
        if response.is_error:
            raise error_from_response(response)
        return response

    # --- abilities ----------------------------------------------------------------------

    async def list_abilities(self) -> list[Ability]:
        """The catalog: every ability with its input schema (spec §3.1.1)."""
        response = await self._request("GET", "/api/abilities", idempotent=True)
        return _parse(_AbilityList, response).items

    async def get_ability(self, ability_id: str) -> Ability:
        """One ability (spec §3.1.2); :class:`NotFoundError` if there is none."""
        response = await self._request(
            "GET", _path("/api/abilities/{}", ability_id), idempotent=True
        )
        return _parse(Ability, response)

    # --- invoking -----------------------------------------------------------------------

    async def invoke_ability(
        self,
        ability_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        image_url: str | None = None,
        image_base64: str | None = None,
        image_path: str | os.PathLike[str] | None = None,
        callback_url: str | None = None,
        callback_headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        executor_id: str | None = None,
        wait: float | None = None,
        respond_async: bool = False,
        idempotency_key: str | None = None,
    ) -> InvokeResult:
        """Invoke an ability; see :meth:`Client.invoke_ability`."""
        self._check_invoke_args(image_url, image_base64, image_path, wait, respond_async)
        image_data = (
            await asyncio.to_thread(_read_image, image_path) if image_path is not None else None
        )
        result, _ = await self._invoke(
            self._invoke_request(
                ability_id,
                inputs,
                image_url=image_url,
                image_base64=image_base64,
                image_data=image_data,
                callback_url=callback_url,
                callback_headers=callback_headers,
                metadata=metadata,
                executor_id=executor_id,
                wait=wait,
                respond_async=respond_async,
                idempotency_key=idempotency_key,
            )
        )
        return result

    async def _invoke(self, call: _Invoke) -> tuple[InvokeResult, float | None]:
        response = await self._request(
            "POST",
            call.path,
            idempotent=True,
            json=call.body,
            headers=call.headers,
            timeout=call.timeout,
        )
        return _parse(InvokeResult, response), parse_retry_after(
            response.headers.get("retry-after")
        )

    async def invoke_and_wait(
        self,
        ability_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_interval: float = 10.0,
        image_url: str | None = None,
        image_base64: str | None = None,
        image_path: str | os.PathLike[str] | None = None,
        callback_url: str | None = None,
        callback_headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        executor_id: str | None = None,
        wait: float | None = None,
        respond_async: bool = False,
        idempotency_key: str | None = None,
    ) -> InvokeResult:
        """Invoke an ability and return its finished result; see :meth:`Client.invoke_and_wait`."""
        self._check_invoke_args(image_url, image_base64, image_path, wait, respond_async)
        started = time.monotonic()
        if wait is None and not respond_async:
            wait = min(timeout, MAX_SERVER_WAIT)
        image_data = (
            await asyncio.to_thread(_read_image, image_path) if image_path is not None else None
        )
        accepted, retry_after = await self._invoke(
            self._invoke_request(
                ability_id,
                inputs,
                image_url=image_url,
                image_base64=image_base64,
                image_data=image_data,
                callback_url=callback_url,
                callback_headers=callback_headers,
                metadata=metadata,
                executor_id=executor_id,
                wait=wait,
                respond_async=respond_async,
                idempotency_key=idempotency_key,
            )
        )
        if accepted.is_terminal:
            return accepted
        task = await self._wait(
            _Poll.start(
                accepted.task_id,
                max(0.0, timeout - (time.monotonic() - started)),
                poll_interval,
                max_interval,
            ),
            first_pause=retry_after,
        )
        if task.status != "succeeded":
            raise _task_error(task)
        return _result_from_task(task, accepted)

    # --- tasks --------------------------------------------------------------------------

    async def _fetch_task(self, task_id: str) -> tuple[Task, float | None]:
        response = await self._request(
            "GET", _path("/api/ability_tasks/{}", task_id), idempotent=True
        )
        return _parse(Task, response), parse_retry_after(response.headers.get("retry-after"))

    async def get_task_status(self, task_id: str) -> Task:
        """A task (spec §3.3); :class:`NotFoundError` if it is unknown or another token's."""
        return (await self._fetch_task(task_id))[0]

    get_task = get_task_status

    async def cancel_task(self, task_id: str) -> Task:
        """Cancel a queued or running task; see :meth:`Client.cancel_task`."""
        response, maybe_sent = await self._send(
            "POST", _path("/api/ability_tasks/{}/cancel", task_id), idempotent=True
        )
        if response.is_error:
            error = error_from_response(response)
            if maybe_sent and isinstance(error, ConflictError) and error.status == "canceled":
                return await self.get_task_status(task_id)
            raise error
        return _parse(Task, response)

    async def list_tasks_page(
        self,
        *,
        status: str | None = None,
        ability_id: str | None = None,
        page_size: int = 20,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of the token's tasks, newest first; pass ``next_cursor`` as ``cursor``."""
        response = await self._request(
            "GET",
            "/api/ability_tasks",
            idempotent=True,
            params=self._list_params(status, ability_id, page_size, cursor),
        )
        return _parse(TaskPage, response)

    async def list_tasks(
        self, *, status: str | None = None, ability_id: str | None = None, page_size: int = 20
    ) -> AsyncIterator[Task]:
        """Every task of the token, newest first, fetched ``page_size`` at a time as iterated."""
        cursor: str | None = None
        while True:
            page = await self.list_tasks_page(
                status=status, ability_id=ability_id, page_size=page_size, cursor=cursor
            )
            for task in page.items:
                yield task
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    async def wait_for_task(
        self,
        task_id: str,
        *,
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_interval: float = 10.0,
    ) -> Task:
        """Poll a task until it ends and return it; see :meth:`Client.wait_for_task`."""
        return await self._wait(_Poll.start(task_id, timeout, poll_interval, max_interval))

    async def _wait(self, poll: _Poll, *, first_pause: float | None = None) -> Task:
        if first_pause is not None:
            await asyncio.sleep(max(0.0, min(first_pause, poll.max_interval, poll.remaining())))
        while True:
            try:
                task, hint = await self._fetch_task(poll.task_id)
            except RateLimitError as error:
                await asyncio.sleep(poll.pause_after_rate_limit(error))
                continue
            except (APIConnectionError, GatewayError) as error:
                if not _transient(error):
                    raise
                await asyncio.sleep(poll.pause_after_blip(error))
                continue
            if task.is_terminal:
                return task
            await asyncio.sleep(poll.pause_after(task, hint))

    # --- callbacks ----------------------------------------------------------------------

    async def get_callbacks(self, task_id: str) -> Deliveries:
        """The task's callback delivery and attempts; see :meth:`Client.get_callbacks`."""
        response = await self._request(
            "GET", _path("/api/ability_tasks/{}/callbacks", task_id), idempotent=True
        )
        return _parse(Deliveries, response)

    async def redeliver_callback(self, task_id: str) -> Deliveries:
        """Send the task's callback once more now (same ``webhook-id``, one attempt)."""
        response = await self._request(
            "POST", _path("/api/ability_tasks/{}/callbacks/redeliver", task_id), idempotent=False
        )
        return _parse(Deliveries, response)


class _AbilityList(BaseModel):
    items: list[Ability]
