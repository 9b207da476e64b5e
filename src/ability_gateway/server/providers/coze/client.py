"""The Coze workflow API client of one executor: direct HTTP over one pooled aiohttp session.

Not cozepy: the gateway needs per-call deadlines, retries with backoff on
transient failures, tolerant parsing and the raw exchange for the call log.

A run is one or more HTTP calls (:class:`CozeCall`, each becomes a call log)
ending in one :class:`RunOutcome`:

    succeeded        code == 0
    workflow_error   code != 0 (Coze's code, message and debug_url kept)
    transport_error  no usable answer (connection, HTTP 5xx without JSON, ...)
    timeout          the deadline passed
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson

from ability_gateway.server.logs import log_event
from ability_gateway.server.providers.coze.auth import CozeAuth, CozeAuthError, TokenAuth
from ability_gateway.server.providers.coze.breaker import CircuitBreaker
from ability_gateway.server.providers.coze.parsing import (
    as_int,
    as_str,
    decode_body,
    envelope_logid,
)
from ability_gateway.server.tracing import Span, span
from ability_gateway.server.tracing import inject as inject_trace

logger = logging.getLogger(__name__)

# Codes worth another try: throttling (4009, 4013, 4020), internal errors (5000) and
# the generic workflow failure users retry (720701013, 720702017).
TRANSIENT_CODES = frozenset({4009, 4013, 4020, 5000, 720701013, 720702017})
TRANSIENT_HTTP = frozenset({429, 502, 503, 504})
THROTTLE_CODES = frozenset({4009, 4013, 4020})
MAX_THROTTLE_DELAY = 10.0
MAX_RESPONSE_BYTES = 20 * 1024 * 1024

OutcomeKind = Literal["succeeded", "workflow_error", "transport_error", "timeout"]


@dataclass(slots=True)
class CozeCall:
    """One HTTP exchange with Coze, as recorded in the call log."""

    operation: str
    workflow_id: str
    request_body: dict[str, Any] | None
    duration_ms: int = 0
    http_status: int | None = None
    code: int | None = None
    message: str | None = None
    logid: str | None = None
    execute_id: str | None = None
    debug_url: str | None = None
    response_text: str | None = None
    response: dict[str, Any] | None = None
    error: str | None = None
    executor_id: str | None = None
    attempt: int = 1  # 1: the first try of this request on this executor; 2: its retry; …


@dataclass(slots=True)
class RunOutcome:
    kind: OutcomeKind
    calls: list[CozeCall] = field(default_factory=list)

    @property
    def last(self) -> CozeCall:
        return self.calls[-1]


class CozeExecutor:
    """One configured Coze account."""

    def __init__(
        self,
        executor_id: str,
        base_url: str,
        token: str | CozeAuth,
        *,
        max_connections: int = 256,
        max_retries: int = 2,
        retry_backoff: float = 0.5,
        allow_async: bool = False,
        allow_internal_image_urls: bool = False,
        weight: float = 1.0,
        max_concurrency: int | None = None,
        qps: float | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.id = executor_id
        self.auth: CozeAuth = TokenAuth(token) if isinstance(token, str) else token
        self.weight = weight
        # Unfinished Coze calls at once across every node (counted in the jobs table).
        self.max_concurrency = max_concurrency
        self.qps = qps
        self.breaker = breaker or CircuitBreaker()
        self.in_flight = 0  # calls from this node right now
        # Set by the registry: a shared limiter (memory, or Redis across nodes) for `qps`.
        self.pacer: Callable[[], Awaitable[bool]] | None = None
        # Set by the process's metrics: told of every call that ended with an outcome.
        self.on_call: Callable[[CozeCall, OutcomeKind], None] | None = None
        # Whether this account's plan allows `is_async` runs (Coze answers 6003 otherwise).
        self.allow_async = allow_async
        # A self-hosted Coze meant to read internal image URLs: the egress policy does not
        # apply to the image URLs given to this executor (abilities/validation.py).
        self.allow_internal_image_urls = allow_internal_image_urls
        self.base_url = base_url.rstrip("/")
        self._headers = {"Content-Type": "application/json", "User-Agent": "ability-gateway"}
        self._max_connections = max_connections
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ttl_dns_cache=300, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                json_serialize=lambda v: orjson.dumps(v).decode(),
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run_workflow(
        self, workflow_id: str, parameters: dict[str, Any], *, deadline: float
    ) -> RunOutcome:
        """Run a workflow synchronously, retrying transient failures until ``deadline``.

        ``deadline`` is on the event loop's clock (``loop.time()``).
        """
        body = {"workflow_id": workflow_id, "parameters": parameters}
        return await self._with_retries(body, "workflow.run", deadline, None)

    async def _with_retries(
        self, body: dict[str, Any], operation: str, deadline: float, per_call_cap: float | None
    ) -> RunOutcome:
        """Send until an answer is final. Transient failures are retried ``max_retries``
        times; throttling (HTTP 429, 4009, 4013, 4020) slows down and keeps trying until
        ``deadline`` (it says "later", not "no")."""
        loop = asyncio.get_running_loop()
        outcome = RunOutcome(kind="transport_error")
        failures = throttled = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                outcome.kind = "timeout"
                break
            timeout = remaining if per_call_cap is None else min(remaining, per_call_cap)
            call, kind, retry = await self._send(
                "POST", "/v1/workflow/run", operation, body, timeout
            )
            outcome.calls.append(call)
            call.attempt = len(outcome.calls)
            outcome.kind = kind
            if kind == "succeeded" and operation == "workflow.submit" and not call.execute_id:
                call.error = "Coze accepted the async run without an execute_id"
                outcome.kind = "transport_error"
            if not retry:
                break
            if call.http_status == 429 or call.code in THROTTLE_CODES:
                throttled += 1
                delay = min(self.retry_backoff * (2 ** min(throttled, 6)), MAX_THROTTLE_DELAY)
            else:
                failures += 1
                if failures > self.max_retries:
                    break
                delay = self.retry_backoff * (2 ** (failures - 1))
            delay *= 0.8 + 0.4 * random.random()
            if loop.time() + delay >= deadline:
                break
            await asyncio.sleep(delay)
        return outcome

    async def submit_async(
        self, workflow_id: str, parameters: dict[str, Any], *, deadline: float
    ) -> RunOutcome:
        """Start an ``is_async`` run (paid plans); ``last.execute_id`` identifies it."""
        body = {"workflow_id": workflow_id, "parameters": parameters, "is_async": True}
        return await self._with_retries(body, "workflow.submit", deadline, 30.0)

    async def get_run_history(
        self, workflow_id: str, execute_id: str, *, timeout: float
    ) -> CozeCall:
        """One poll of an async run: ``GET /v1/workflows/{wid}/run_histories/{eid}``."""
        path = f"/v1/workflows/{workflow_id}/run_histories/{execute_id}"
        call, _, _ = await self._send("GET", path, "workflow.history", None, timeout, workflow_id)
        return call

    async def _send(
        self,
        method: str,
        path: str,
        operation: str,
        body: dict[str, Any] | None,
        timeout: float,
        workflow_id: str | None = None,
    ) -> tuple[CozeCall, OutcomeKind, bool]:
        wid = workflow_id if body is None else str(body["workflow_id"])
        call = CozeCall(
            operation=operation, workflow_id=wid or "", request_body=body, executor_id=self.id
        )
        started = time.perf_counter()
        self.in_flight += 1
        self.breaker.call_started()
        try:
            attributes = {"gateway.executor.id": self.id, "coze.operation": operation}
            with span(f"coze.{operation}", attributes, kind="client") as traced:
                call, kind, retry = await self._exchange(method, path, body, timeout, call, started)
                _trace(traced, call, kind)
        finally:
            self.in_flight -= 1
            self.breaker.call_ended()
        healthy = kind == "succeeded" or (
            kind == "workflow_error"
            and call.code not in THROTTLE_CODES
            and call.code != 5000
            and call.http_status != 429
            and (call.http_status or 200) < 500
        )
        self.breaker.record(healthy, None if healthy else (call.error or f"code {call.code}"))
        if self.on_call is not None:
            self.on_call(call, kind)
        _log(call, kind)
        return call, kind, retry

    async def _pace(self, timeout: float) -> None:
        """Wait for a slot under this account's QPS cap (shared across nodes with Redis)."""
        if self.pacer is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await self.pacer():
            if loop.time() >= deadline:
                raise TimeoutError
            await asyncio.sleep(min(0.05, 1 / (self.qps or 20)))

    async def _exchange(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        timeout: float,
        call: CozeCall,
        started: float,
    ) -> tuple[CozeCall, OutcomeKind, bool]:
        try:
            await self._pace(timeout)
            session = self._client()
            authorization = await self.auth.header(session)
        except TimeoutError:
            call.duration_ms = _ms_since(started)
            call.error = "no slot under the executor's QPS cap within the deadline"
            return call, "timeout", False
        except CozeAuthError as exc:
            call.duration_ms = _ms_since(started)
            call.error = str(exc)
            return call, "transport_error", False
        try:
            async with session.request(
                method,
                self.base_url + path,
                data=None if body is None else orjson.dumps(body),
                headers=inject_trace({"Authorization": authorization}),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as resp:
                call.http_status = resp.status
                call.logid = resp.headers.get("X-Tt-Logid")
                raw = await resp.content.read(MAX_RESPONSE_BYTES + 1)
        except TimeoutError:
            call.duration_ms = _ms_since(started)
            call.error = f"no answer within {timeout:.1f} s"
            return call, "timeout", False
        except aiohttp.ClientConnectorError as exc:
            # Nothing was sent: always safe to try again.
            call.duration_ms = _ms_since(started)
            call.error = f"cannot connect to Coze: {exc}"
            return call, "transport_error", True
        except aiohttp.ClientError as exc:
            call.duration_ms = _ms_since(started)
            call.error = f"Coze request failed: {type(exc).__name__}: {exc}"
            return call, "transport_error", False
        call.duration_ms = _ms_since(started)
        if len(raw) > MAX_RESPONSE_BYTES:
            call.error = f"Coze response larger than {MAX_RESPONSE_BYTES} bytes"
            return call, "transport_error", False
        call.response_text = raw.decode("utf-8", errors="replace")
        envelope = decode_body(raw)
        if envelope is None:
            call.error = f"Coze answered HTTP {resp.status} without a JSON body"
            return call, "transport_error", resp.status in TRANSIENT_HTTP
        call.response = envelope
        call.code = as_int(envelope.get("code"))
        call.message = as_str(envelope.get("msg")) or as_str(envelope.get("message"))
        call.execute_id = as_str(envelope.get("execute_id"))
        call.debug_url = as_str(envelope.get("debug_url"))
        call.logid = call.logid or envelope_logid(envelope)
        if call.code is None:
            # No code at all: success only if it looks like one.
            if resp.status == 200 and ("data" in envelope or call.execute_id):
                call.code = 0
            else:
                call.error = f"Coze answered HTTP {resp.status} without a code"
                return call, "transport_error", resp.status in TRANSIENT_HTTP
        if call.code == 0:
            return call, "succeeded", False
        retry = call.code in TRANSIENT_CODES or resp.status in TRANSIENT_HTTP
        return call, "workflow_error", retry


def _log(call: CozeCall, kind: OutcomeKind) -> None:
    """``coze.call``: what the call log keeps, without the request or the answer's body."""
    level = logging.WARNING if kind in ("transport_error", "timeout") else logging.INFO
    log_event(
        logger,
        "coze.call",
        level,
        executor=call.executor_id,
        operation=call.operation,
        workflowId=call.workflow_id,
        httpStatus=call.http_status,
        cozeCode=call.code,
        logid=call.logid,
        executeId=call.execute_id,
        durationMs=call.duration_ms,
        outcome=kind,
        error=call.error,
    )


def _trace(traced: Span, call: CozeCall, kind: OutcomeKind) -> None:
    if not traced.recording:
        return
    traced.set(
        {
            "http.response.status_code": call.http_status,
            "coze.code": call.code,
            "coze.logid": call.logid,
            "coze.execute_id": call.execute_id,
            "gateway.coze.outcome": kind,
        }
    )
    if kind != "succeeded":
        traced.fail(call.error or f"Coze code {call.code}")


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
