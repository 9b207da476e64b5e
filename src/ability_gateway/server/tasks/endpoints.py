"""Invocations and tasks (spec §3.2–3.3): invoke, query, list, cancel."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Query, Request

from ability_gateway.server.deps import CurrentToken, Gateway
from ability_gateway.server.errors import (
    BadRequest,
    FieldError,
)
from ability_gateway.server.http import JSONResponse, current_request_id
from ability_gateway.server.jsonbody import read_model
from ability_gateway.server.metrics.registry import outcome_of
from ability_gateway.server.openapi import ERROR_RESPONSES
from ability_gateway.server.tasks import answers, invoke, service
from ability_gateway.server.tasks.schemas import (
    ErrorBody,
    InvokeRequest,
    InvokeResult,
    Task,
    TaskList,
    TaskStatus,
)

router = APIRouter(prefix="/api", tags=["tasks"])

_WAIT_RE = re.compile(r"^\s*wait\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*$", re.IGNORECASE)
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
# Body fields that hold no control character at all (NUL is refused in every string).
_ID_AND_URL_FIELDS = frozenset({"executorId", "imageUrl", "callbackUrl"})


async def _read_invoke_body(request: Request) -> InvokeRequest:
    """The body as JSON whatever its Content-Type (``curl -d`` sends a form type).

    Its size is capped before it gets here (``bodylimit``: 413 over ``INVOKE_BODY_BYTES``).
    """
    return await read_model(request, InvokeRequest, ids=_ID_AND_URL_FIELDS)


def _options(
    prefer: str | None, idempotency_key: str | None, default_wait: float
) -> answers.InvokeOptions:
    """``Prefer: wait=N`` (at most 60 s), ``Prefer: respond-async``; ``Idempotency-Key``."""
    wait = default_wait
    respond_async = False
    applied: list[str] = []
    for token in (prefer or "").split(","):
        token = token.split(";", 1)[0].strip()  # preference parameters (RFC 7240) are ignored
        if not token:
            continue
        if token.lower() == "respond-async":
            respond_async = True
            applied = ["respond-async"]
        elif (match := _WAIT_RE.match(token)) and not respond_async:
            wait = min(float(match.group(1)), answers.MAX_WAIT_SECONDS)
            applied = [f"wait={wait:g}"]
    if idempotency_key is not None and not _KEY_RE.match(idempotency_key):
        raise BadRequest(
            "Invalid Idempotency-Key",
            [FieldError("Idempotency-Key", "must be 1-255 visible ASCII characters")],
        )
    return answers.InvokeOptions(
        wait_seconds=0.0 if respond_async else wait,
        respond_async=respond_async,
        idempotency_key=idempotency_key,
        applied=", ".join(applied) or None,
    )


_ANSWER_HEADERS = {
    "X-Cache": {
        "description": "`HIT` or `MISS`, for an ability with a result cache",
        "schema": {"type": "string", "enum": ["HIT", "MISS"]},
    },
    "Idempotent-Replayed": {
        "description": "`true`: an earlier request with this Idempotency-Key made this task",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Preference-Applied": {
        "description": "The `Prefer` preferences applied",
        "schema": {"type": "string"},
    },
}


@router.post(
    "/abilities/{ability_id}/invoke",
    response_model=InvokeResult,
    operation_id="invoke_ability",
    openapi_extra={
        "parameters": [
            {
                "name": "Prefer",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "`wait=N` (seconds, at most 60) or `respond-async`",
            },
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 255},
                "description": "Retries with the same key and body get the same task (24 h)",
            },
            {
                "name": "traceparent",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "W3C Trace Context: with the gateway's tracing on, the task's "
                "spans (its steps, Coze calls, callback) join this trace, and Coze and the "
                "callback receiver get a `traceparent` of it",
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InvokeRequest"}}
            },
        },
    },
    responses={
        **ERROR_RESPONSES,
        200: {"headers": _ANSWER_HEADERS},
        202: {
            "model": InvokeResult,
            "description": "Accepted: the task goes on (see Location)",
            "headers": {
                **_ANSWER_HEADERS,
                "Location": {"description": "The task", "schema": {"type": "string"}},
                "Retry-After": {
                    "description": "Seconds before asking the task again",
                    "schema": {"type": "integer"},
                },
            },
        },
        409: {"model": ErrorBody, "description": "Idempotency-Key reused with another body"},
        502: {
            "model": ErrorBody,
            "description": "The workflow failed (Coze's code) or Coze is unreachable",
        },
        504: {"model": ErrorBody, "description": "The task did not finish within its deadline"},
    },
)
async def invoke_ability(
    ability_id: str,
    request: Request,
    gateway: Gateway,
    token: CurrentToken,
) -> JSONResponse:
    """Invoke an ability; every invocation creates a task (`metadata.taskId`).

    200 when the task finished within the wait (default 30 s, `Prefer: wait=N`), 202 with the
    task (`queued`/`running`), a `Location` and a `Retry-After` when it did not; it goes on.
    """
    started = time.perf_counter()
    # Headers read directly (documented in openapi_extra): cheaper than FastAPI parameters.
    prefer = request.headers.get("prefer")
    idempotency_key = request.headers.get("idempotency-key")
    # Counted by ability, mode and outcome (metrics/registry.py); children made at start.
    series = gateway.metrics.invoke_series(ability_id, respond_async=False)
    try:
        options = _options(prefer, idempotency_key, gateway.settings.invoke_wait_seconds)
        if options.respond_async:
            series = gateway.metrics.invoke_series(ability_id, respond_async=True)
        if "no-cache" in request.headers.get("cache-control", "").lower():
            options = replace(options, no_cache=True)
        body = await _read_invoke_body(request)
        answer = await invoke.invoke(
            gateway, token, ability_id, body, current_request_id(), options
        )
    except Exception as exc:
        series.raised(exc, time.perf_counter() - started)
        gateway.metrics.token_invocation(token.token_id, outcome_of(exc))
        raise
    series.answered(answer.status_code, time.perf_counter() - started)
    gateway.metrics.token_invocation(
        token.token_id, "succeeded" if answer.status_code == 200 else "accepted"
    )
    headers = {}
    if answer.status_code == 202:
        headers["Location"] = f"/api/ability_tasks/{answer.task_id}"
        headers["Retry-After"] = str(answer.retry_after or 1)
    if options.applied:
        headers["Preference-Applied"] = options.applied
    if answer.cache:
        headers["X-Cache"] = answer.cache
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(answer.body, status_code=answer.status_code, headers=headers)


@router.get(
    "/ability_tasks",
    response_model=TaskList,
    operation_id="list_tasks",
    responses=ERROR_RESPONSES,
)
async def list_tasks(
    gateway: Gateway,
    token: CurrentToken,
    status: Annotated[TaskStatus | None, Query()] = None,
    ability_id: Annotated[str | None, Query(alias="abilityId", max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None,
        Query(
            max_length=64,
            description="`nextCursor` of the previous page; anything else (even empty) is a 400.",
        ),
    ] = None,
) -> JSONResponse:
    """The calling token's tasks, newest first; pass `nextCursor` back as `cursor`."""
    page = await service.list_tasks(
        gateway, token, status=status, ability_id=ability_id, cursor=cursor, limit=limit
    )
    return JSONResponse(page)


@router.get(
    "/ability_tasks/{task_id}",
    response_model=Task,
    operation_id="get_task",
    responses=ERROR_RESPONSES,
)
async def get_task(task_id: str, gateway: Gateway, token: CurrentToken) -> JSONResponse:
    """A task of the calling token (another token's task is a 404)."""
    return JSONResponse(await service.get_task(gateway, token, task_id))


@router.post(
    "/ability_tasks/{task_id}/cancel",
    response_model=Task,
    operation_id="cancel_task",
    responses={
        **ERROR_RESPONSES,
        409: {"model": ErrorBody, "description": "The task already finished"},
    },
)
async def cancel_task(task_id: str, gateway: Gateway, token: CurrentToken) -> JSONResponse:
    """Cancel a queued or running task: it ends `canceled` and late results are ignored."""
    return JSONResponse(await service.cancel_task(gateway, token, task_id))
