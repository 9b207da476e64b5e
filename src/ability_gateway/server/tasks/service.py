"""Invocations and tasks.

A synchronous invocation is two short write transactions and one upstream run:

    accept:  validate -> INSERT task (running)                       [transaction 1]
    run:     Coze /v1/workflow/run, retried on transient failures    [no transaction,
                                                                      concurrent with 1]
    finish:  INSERT call log(s) + UPDATE task (terminal)             [transaction 2,
                                                                      after both]

Task states: queued -> running -> succeeded | failed | timeout | canceled.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from ability_gateway.server.abilities.catalog import AbilityDefinition
from ability_gateway.server.abilities.validation import build_parameters, is_http_url
from ability_gateway.server.auth.service import Principal
from ability_gateway.server.errors import (
    BadRequest,
    FieldError,
    NotFound,
    NotImplementedYet,
    UpstreamError,
    UpstreamTimeout,
)
from ability_gateway.server.ids import new_id
from ability_gateway.server.providers.coze.client import RunOutcome
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks import repository
from ability_gateway.server.tasks.results import shape_output
from ability_gateway.server.tasks.schemas import InvokeRequest

MAX_METADATA_BYTES = 16 * 1024
MAX_CALLBACK_HEADERS = 20
# Headers a caller may not set on its callbacks: they belong to HTTP or to our signature.
RESERVED_CALLBACK_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
    }
)
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")

STATE_BY_STATUS = {
    "queued": "queued",
    "running": "running",
    "succeeded": "completed",
    "failed": "failed",
    "canceled": "canceled",
    "timeout": "timeout",
}


def get_ability(gateway: GatewayState, ability_id: str) -> AbilityDefinition:
    ability = gateway.catalog.get(ability_id)
    if ability is None:
        raise NotFound(f"Ability {ability_id!r} does not exist")
    return ability


def _check_callback(body: InvokeRequest, errors: list[FieldError]) -> None:
    if body.callbackUrl is not None and not is_http_url(body.callbackUrl):
        errors.append(FieldError("callbackUrl", "must be an http(s) URL"))
    headers = body.callbackHeaders or {}
    if headers and body.callbackUrl is None:
        errors.append(FieldError("callbackHeaders", "needs a callbackUrl"))
    if len(headers) > MAX_CALLBACK_HEADERS:
        errors.append(FieldError("callbackHeaders", f"at most {MAX_CALLBACK_HEADERS} headers"))
    for name, value in headers.items():
        lowered = name.lower()
        if not _HEADER_NAME_RE.match(name):
            errors.append(FieldError(f"callbackHeaders.{name}", "is not a valid header name"))
        elif lowered in RESERVED_CALLBACK_HEADERS or lowered.startswith(("webhook-", "proxy-")):
            errors.append(FieldError(f"callbackHeaders.{name}", "is reserved by the gateway"))
        elif any(c in value for c in "\r\n\0") or len(value) > 4096:
            errors.append(FieldError(f"callbackHeaders.{name}", "is not a valid header value"))


def _check_metadata(body: InvokeRequest, errors: list[FieldError]) -> None:
    if body.metadata is not None and len(orjson.dumps(body.metadata)) > MAX_METADATA_BYTES:
        errors.append(FieldError("metadata", f"must be at most {MAX_METADATA_BYTES} bytes as JSON"))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


async def invoke(
    gateway: GatewayState,
    principal: Principal,
    ability_id: str,
    body: InvokeRequest,
    request_id: str,
) -> dict[str, Any]:
    """Run a synchronous ability and return its spec §3.2.3 result (or raise its error)."""
    started = time.perf_counter()
    ability = get_ability(gateway, ability_id)
    errors: list[FieldError] = []
    _check_callback(body, errors)
    _check_metadata(body, errors)
    if errors:
        raise BadRequest("The request is invalid", errors)
    if body.imageBase64 is not None:
        raise NotImplementedYet("imageBase64 inputs need media storage, not in this version yet")
    parameters = build_parameters(ability, body.inputs, body.imageUrl)
    if ability.status != "active":
        raise BadRequest(f"Ability {ability.id!r} is {ability.status}")
    if ability.mode == "external_job":
        raise NotImplementedYet(
            f"Ability {ability.id!r} runs as a long generation job; asynchronous tasks are "
            "not in this version yet"
        )
    executor = gateway.executors.choose(body.executorId)

    task_id = new_id("task")
    accept = asyncio.ensure_future(
        gateway.db.run_write(
            partial(
                repository.insert_task,
                values={
                    "id": task_id,
                    "token_id": principal.token_id,
                    "ability_id": ability.id,
                    "executor_id": executor.id,
                    "status": "running",
                    "request_id": request_id,
                    "inputs": parameters,
                    "client_metadata": body.metadata,
                    "callback_url": body.callbackUrl,
                    "callback_headers": body.callbackHeaders,
                },
            )
        )
    )
    # The upstream call starts while the task row commits (a fraction of a millisecond,
    # against tens of milliseconds upstream): the commit is off the latency path, and the
    # result is only recorded, and answered, once the task row exists.
    loop = asyncio.get_running_loop()
    run = asyncio.ensure_future(
        executor.run_workflow(
            ability.workflow_id, parameters, deadline=loop.time() + ability.timeout_seconds
        )
    )

    async def complete() -> dict[str, Any]:
        try:
            await accept
        except BaseException:
            run.cancel()
            raise
        outcome = await run
        duration_ms = int((time.perf_counter() - started) * 1000)
        return await _finish(
            gateway, ability, task_id, executor.id, body, request_id, outcome, duration_ms
        )

    # A caller that hangs up does not stop the task: it still finishes and is recorded.
    work = gateway.track(complete())
    return await asyncio.shield(work)


async def _finish(
    gateway: GatewayState,
    ability: AbilityDefinition,
    task_id: str,
    executor_id: str,
    body: InvokeRequest,
    request_id: str,
    outcome: RunOutcome,
    duration_ms: int,
) -> dict[str, Any]:
    last = outcome.last if outcome.calls else None
    execute_id = last.execute_id if last else None
    debug_url = last.debug_url if last else None
    result_payload: dict[str, Any] | None = None
    error_payload: dict[str, Any] | None = None
    if outcome.kind == "succeeded" and last is not None and last.response is not None:
        status = "succeeded"
        result_payload = shape_output(ability, last.response.get("data"))
        metadata: dict[str, Any] = {
            "model": ability.provider,
            "state": STATE_BY_STATUS[status],
            "taskId": task_id,
            "executeId": execute_id,
            "debugUrl": debug_url,
            "executorId": executor_id,
            "workflowId": ability.workflow_id,
        }
        usage = last.response.get("usage")
        if isinstance(usage, dict):
            metadata["usage"] = usage
        if body.metadata is not None:
            metadata["client"] = body.metadata
        result_payload["metadata"] = metadata
        result_payload["raw"] = {"response": last.response}
    elif outcome.kind == "timeout":
        status = "timeout"
        error_payload = {
            "code": 504,
            "message": f"The workflow did not finish within {ability.timeout_seconds:g} s",
        }
    elif outcome.kind == "workflow_error" and last is not None:
        status = "failed"
        error_payload = {
            "code": last.code,
            "message": last.message or "Workflow execution failed",
            "debugUrl": debug_url,
            "executeId": execute_id,
            "cozeLogId": last.logid,
        }
    else:
        status = "failed"
        error_payload = {
            "code": 502,
            "message": (last.error if last else None) or "Coze could not be reached",
        }

    def record(conn: Connection) -> int | None:
        log_id = repository.insert_call_logs(conn, task_id, executor_id, outcome.calls)
        error = None if error_payload is None else {**error_payload, "logId": log_id}
        repository.finish_task(
            conn,
            task_id,
            {
                "status": status,
                "log_id": log_id,
                "execute_id": execute_id,
                "result_payload": result_payload,
                "error_payload": error,
                "duration_ms": duration_ms,
            },
        )
        return log_id

    log_id = await gateway.db.run_write(record)
    if error_payload is not None:
        error_payload["logId"] = log_id

    if error_payload is not None:
        extra = {
            "taskId": task_id,
            "logId": log_id,
            "debugUrl": error_payload.get("debugUrl"),
            "status": status,
        }
        if status == "timeout":
            raise UpstreamTimeout(error_payload["message"], extra=extra)
        raise UpstreamError(error_payload["message"], code=error_payload["code"], extra=extra)
    assert result_payload is not None
    return {
        "abilityId": ability.id,
        "provider": ability.provider,
        "status": status,
        "requestId": request_id,
        "logId": log_id,
        "durationMs": duration_ms,
        **result_payload,
    }


async def get_task(gateway: GatewayState, principal: Principal, task_id: str) -> dict[str, Any]:
    async with gateway.db.read() as conn:
        row = await repository.get_task(conn, task_id, principal.token_id)
    if row is None:
        raise NotFound(f"Task {task_id!r} does not exist")
    return {
        "id": row["id"],
        "abilityId": row["ability_id"],
        "status": row["status"],
        "requestId": row["request_id"],
        "logId": row["log_id"],
        "createTime": _iso(row["created_at"]),
        "updateTime": _iso(row["updated_at"]),
        "resultPayload": row["result_payload"],
        "errorPayload": row["error_payload"],
    }
