"""``/api/admin/…`` across every token (admin scope): tasks and their story, call logs (look
up a ``logId``), the callback dead-letter and redelivery."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from ability_gateway.server.admin import service
from ability_gateway.server.admin.repository import CallLogFilter, TaskFilter
from ability_gateway.server.admin.schemas import (
    AdminTaskPage,
    CallLogDetail,
    CallLogPage,
    DeliveryPage,
    DeliveryState,
    Redeliver,
    RedeliveryReport,
    TaskStatus,
    TaskStory,
)
from ability_gateway.server.auth.service import SCOPE_ADMIN
from ability_gateway.server.deps import CurrentToken, Gateway
from ability_gateway.server.errors import BadRequest, ErrorBody, FieldError
from ability_gateway.server.http import JSONResponse
from ability_gateway.server.jsonbody import read_model
from ability_gateway.server.openapi import ERROR_RESPONSES

router = APIRouter(prefix="/api/admin", tags=["admin"])

Limit = Annotated[int, Query(ge=1, le=200)]
Since = Annotated[str | None, Query(alias="from", max_length=64, description="ISO 8601")]
Until = Annotated[str | None, Query(alias="to", max_length=64, description="ISO 8601")]
Short = Annotated[str | None, Query(max_length=128)]
_REDELIVER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Redeliver"},
                "example": {"state": "exhausted", "limit": 50},
            }
        },
    }
}
_RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "Redelivery rate limit"}
}


@router.get(
    "/tasks",
    operation_id="admin_list_tasks",
    response_model=AdminTaskPage,
    responses=ERROR_RESPONSES,
)
async def list_tasks(
    gateway: Gateway,
    token: CurrentToken,
    token_id: Annotated[str | None, Query(alias="tokenId", max_length=64)] = None,
    ability_id: Annotated[str | None, Query(alias="abilityId", max_length=100)] = None,
    status: Annotated[TaskStatus | None, Query()] = None,
    executor_id: Annotated[str | None, Query(alias="executorId", max_length=100)] = None,
    since: Since = None,
    until: Until = None,
    q: Annotated[
        str | None, Query(max_length=128, description="A taskId, requestId, externalJobId…")
    ] = None,
    cursor: Short = None,
    limit: Limit = 50,
) -> JSONResponse:
    """Every token's tasks, newest first, filtered."""
    token.require(SCOPE_ADMIN)
    since_ms, until_ms = service.time_range(since, until)
    where = TaskFilter(token_id, ability_id, status, executor_id, since_ms, until_ms, q)
    return JSONResponse(await service.list_tasks(gateway, where, cursor, limit))


@router.get(
    "/tasks/{task_id}",
    operation_id="admin_get_task",
    response_model=TaskStory,
    responses=ERROR_RESPONSES,
)
async def get_task(
    task_id: Annotated[str, Path(max_length=64)], gateway: Gateway, token: CurrentToken
) -> JSONResponse:
    """A task's whole story: its Coze calls, the media it stored, its callback attempts."""
    token.require(SCOPE_ADMIN)
    return JSONResponse(await service.task_story(gateway, task_id))


@router.get(
    "/call_logs/{log_id}",
    operation_id="admin_get_call_log",
    response_model=CallLogDetail,
    responses=ERROR_RESPONSES,
)
async def get_call_log(
    log_id: Annotated[int, Path(ge=1, le=2**62)], gateway: Gateway, token: CurrentToken
) -> JSONResponse:
    """The call behind a `logId` that an error body or a task carried."""
    token.require(SCOPE_ADMIN)
    return JSONResponse(await service.get_call_log(gateway, log_id))


@router.get(
    "/call_logs",
    operation_id="admin_list_call_logs",
    response_model=CallLogPage,
    responses=ERROR_RESPONSES,
)
async def list_call_logs(
    gateway: Gateway,
    token: CurrentToken,
    task_id: Annotated[str | None, Query(alias="taskId", max_length=64)] = None,
    executor_id: Annotated[str | None, Query(alias="executorId", max_length=100)] = None,
    operation: Annotated[str | None, Query(max_length=40)] = None,
    coze_code: Annotated[int | None, Query(alias="cozeCode", ge=-(2**62), le=2**62)] = None,
    failed: Annotated[bool, Query(description="Only calls without Coze code 0")] = False,
    since: Since = None,
    until: Until = None,
    cursor: Short = None,
    limit: Limit = 50,
) -> JSONResponse:
    """Calls to Coze, newest first, filtered."""
    token.require(SCOPE_ADMIN)
    since_ms, until_ms = service.time_range(since, until)
    after = None
    if cursor is not None:
        if not cursor.isdigit():
            raise BadRequest("The request is invalid", [FieldError("cursor", "is not a cursor")])
        after = int(cursor)
    where = CallLogFilter(task_id, executor_id, operation, coze_code, failed, since_ms, until_ms)
    return JSONResponse(await service.list_call_logs(gateway, where, after, limit))


@router.get(
    "/callbacks",
    operation_id="admin_list_callbacks",
    response_model=DeliveryPage,
    responses=ERROR_RESPONSES,
)
async def list_callbacks(
    gateway: Gateway,
    token: CurrentToken,
    state: Annotated[
        list[DeliveryState] | None,
        Query(description="Repeatable; default: the dead letter (exhausted, gone)"),
    ] = None,
    token_id: Annotated[str | None, Query(alias="tokenId", max_length=64)] = None,
    cursor: Short = None,
    limit: Limit = 50,
) -> JSONResponse:
    """Callback deliveries by state, newest first: by default those that gave up."""
    token.require(SCOPE_ADMIN)
    states = tuple(state) if state else ("exhausted", "gone")
    return JSONResponse(await service.list_deliveries(gateway, states, token_id, cursor, limit))


@router.post(
    "/callbacks/redeliver",
    operation_id="admin_redeliver_callbacks",
    response_model=RedeliveryReport,
    responses={**ERROR_RESPONSES, **_RATE_LIMITED},
    openapi_extra=_REDELIVER_BODY,
)
async def redeliver_callbacks(
    request: Request, gateway: Gateway, token: CurrentToken
) -> JSONResponse:
    """Send chosen deliveries once more (by `taskIds`, or a dead-letter `state`, capped at 100):
    one attempt each, same `webhook-id`, as a token's own redelivery."""
    token.require(SCOPE_ADMIN)
    body = await read_model(request, Redeliver)
    if (body.taskIds is None) == (body.state is None):
        raise BadRequest(
            "The request is invalid", [FieldError("taskIds", "give either taskIds or state")]
        )
    if body.taskIds is not None:
        task_ids = list(dict.fromkeys(body.taskIds))
    else:
        assert body.state is not None
        page = await service.list_deliveries(gateway, (body.state,), body.tokenId, None, body.limit)
        task_ids = [item["taskId"] for item in page["items"]]
    return JSONResponse({"items": await service.redeliver_many(gateway, task_ids)})
