"""The asyncio client of the gateway: :class:`AsyncClient`.

This module owns the sending side of :class:`AsyncClient`: its httpx connection pool, the
retry loop (sleeping with :func:`asyncio.sleep`, image files read in a thread), and one
awaitable method per gateway operation, the twins of :class:`~ability_gateway.Client`'s
(``list_tasks`` is iterated with ``async for``). What the two share lives in
:mod:`ability_gateway._transport` and :mod:`ability_gateway._polling`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping
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

__all__ = ["AsyncClient"]


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
        """The answer (any status), and whether an earlier try may have reached the gateway."""
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
        result, _ = await self._invoke(args)
        return result

    async def _invoke(self, args: _InvokeArgs) -> tuple[InvokeResult, float | None]:
        """Send an invoke: its answer and the answer's ``Retry-After`` (seconds), if any."""
        image_data = (
            await asyncio.to_thread(_read_image, args.image_path)
            if args.image_path is not None
            else None
        )
        call = self._invoke_request(args, image_data)
        response = await self._request(
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
        accepted, retry_after = await self._invoke(args.waiting_at_most(timeout))
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
