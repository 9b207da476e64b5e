"""Invocations and tasks: ``POST /api/abilities/{id}/invoke``, ``GET /api/ability_tasks/{id}``."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError

from ability_gateway.server.deps import CurrentToken, Gateway
from ability_gateway.server.errors import (
    BadRequest,
    FieldError,
    PayloadTooLarge,
    validation_field_errors,
)
from ability_gateway.server.http import JSONResponse, current_request_id
from ability_gateway.server.openapi import ERROR_RESPONSES
from ability_gateway.server.tasks import service
from ability_gateway.server.tasks.schemas import ErrorBody, InvokeRequest, InvokeResult, Task

router = APIRouter(prefix="/api", tags=["tasks"])

MAX_INVOKE_BODY_BYTES = 20 * 1024 * 1024


async def _read_invoke_body(request: Request) -> InvokeRequest:
    """The body as JSON whatever its Content-Type (``curl -d`` sends a form type)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_INVOKE_BODY_BYTES:
        raise PayloadTooLarge(f"The request body is larger than {MAX_INVOKE_BODY_BYTES} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_INVOKE_BODY_BYTES:
            raise PayloadTooLarge(f"The request body is larger than {MAX_INVOKE_BODY_BYTES} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        problem = "is empty" if not raw.strip() else f"is not valid JSON ({exc.msg})"
        raise BadRequest(
            "The request body is not valid JSON", [FieldError("body", problem)]
        ) from exc
    if not isinstance(data, dict):
        raise BadRequest("The request is invalid", [FieldError("body", "must be a JSON object")])
    try:
        return InvokeRequest.model_validate(data)
    except ValidationError as exc:
        raise BadRequest("The request is invalid", validation_field_errors(exc.errors())) from exc


@router.post(
    "/abilities/{ability_id}/invoke",
    response_model=InvokeResult,
    operation_id="invoke_ability",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InvokeRequest"}}
            },
        }
    },
    responses={
        **ERROR_RESPONSES,
        502: {
            "model": ErrorBody,
            "description": "The workflow failed (Coze's code) or Coze is unreachable",
        },
        504: {"model": ErrorBody, "description": "The workflow did not finish within its deadline"},
    },
)
async def invoke_ability(
    ability_id: str, request: Request, gateway: Gateway, token: CurrentToken
) -> JSONResponse:
    """Invoke an ability; every invocation creates a task (`metadata.taskId`)."""
    body = await _read_invoke_body(request)
    result = await service.invoke(gateway, token, ability_id, body, current_request_id())
    return JSONResponse(result)


@router.get(
    "/ability_tasks/{task_id}",
    response_model=Task,
    operation_id="get_task",
    responses=ERROR_RESPONSES,
)
async def get_task(task_id: str, gateway: Gateway, token: CurrentToken) -> JSONResponse:
    """A task of the calling token (another token's task is a 404)."""
    return JSONResponse(await service.get_task(gateway, token, task_id))
