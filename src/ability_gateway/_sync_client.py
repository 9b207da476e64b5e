"""The blocking client of the gateway: :class:`Client`.

This module owns the sending side of :class:`Client`: its httpx connection pool, the retry
loop (sleeping with :func:`time.sleep`), and one method per gateway operation. What it
shares with :class:`~ability_gateway.AsyncClient` (the same methods with the same arguments:
request building, the retry policy, answer parsing, the poll schedule) lives in
:mod:`ability_gateway._transport` and :mod:`ability_gateway._polling`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from ability_gateway._errors import (
    APIConnectionError,
    ConflictError,
    GatewayError,
    RateLimitError,
    error_from_response,
    parse_retry_after,
)
from ability_gateway._models import Ability, Deliveries, InvokeResult, Task, TaskPage
from ability_gateway._polling import _Poll, _result_from_task, _task_error, _transient
from ability_gateway._transport import (
    _MAYBE_SENT,
    DEFAULT_TIMEOUT,
    _AbilityList,
    _backoff,
    _BaseClient,
    _InvokeArgs,
    _parse,
    _path,
    _read_image,
    _retryable,
    _unavailable_pause,
)

__all__ = ["Client"]


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
        args = self._invoke_args(
            ability_id,
            inputs,
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
        result, _ = self._invoke(args)
        return result

    def _invoke(self, args: _InvokeArgs) -> tuple[InvokeResult, float | None]:
        """Send an invoke: its answer and the answer's ``Retry-After`` (seconds), if any."""
        image_data = _read_image(args.image_path) if args.image_path is not None else None
        call = self._invoke_request(args, image_data)
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
        args = self._invoke_args(
            ability_id,
            inputs,
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
        started = time.monotonic()
        accepted, retry_after = self._invoke(args.waiting_at_most(timeout))
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
