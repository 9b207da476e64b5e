"""A task's callback delivery: ``GET …/callbacks`` and ``POST …/callbacks/redeliver``."""

from __future__ import annotations

from fastapi import APIRouter

from ability_gateway.server.callbacks import service
from ability_gateway.server.callbacks.schemas import Deliveries
from ability_gateway.server.deps import CurrentToken, Gateway
from ability_gateway.server.http import JSONResponse
from ability_gateway.server.openapi import ERROR_RESPONSES

router = APIRouter(prefix="/api/ability_tasks", tags=["callbacks"])


@router.get(
    "/{task_id}/callbacks",
    response_model=Deliveries,
    operation_id="list_task_callbacks",
    responses=ERROR_RESPONSES,
)
async def list_task_callbacks(task_id: str, gateway: Gateway, token: CurrentToken) -> JSONResponse:
    """The task's callback delivery and every attempt (time, status, duration, error, answer)."""
    return JSONResponse(await service.list_deliveries(gateway, token, task_id))


@router.post(
    "/{task_id}/callbacks/redeliver",
    response_model=Deliveries,
    operation_id="redeliver_task_callback",
    responses=ERROR_RESPONSES,
)
async def redeliver_task_callback(
    task_id: str, gateway: Gateway, token: CurrentToken
) -> JSONResponse:
    """Send the callback once more now (same `webhook-id`, one attempt, no new schedule).

    Per task, one redelivery at a time and a few a minute (`GATEWAY_CALLBACK_REDELIVER_PER_MINUTE`),
    else 429 with `Retry-After`. The attempts list keeps every scheduled attempt and the latest
    manual ones (`GATEWAY_CALLBACK_MANUAL_ATTEMPTS_KEPT`)."""
    return JSONResponse(await service.redeliver(gateway, token, task_id))
