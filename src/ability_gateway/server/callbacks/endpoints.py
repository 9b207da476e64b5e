"""A task's callback delivery: ``GET …/callbacks`` and ``POST …/callbacks/redeliver``."""

from __future__ import annotations

from fastapi import APIRouter

from ability_gateway.server.callbacks import service
from ability_gateway.server.callbacks.schemas import Deliveries
from ability_gateway.server.deps import CurrentToken, Gateway
from ability_gateway.server.http import JSONResponse
from ability_gateway.server.openapi import ERROR_RESPONSES
from ability_gateway.server.tasks.schemas import CallbackBody

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


# What the gateway sends (OpenAPI 3.1 `webhooks`): the callback of a task that ended.
webhooks = APIRouter()


@webhooks.post(
    "taskEnded",
    operation_id="task_ended_callback",
    responses={
        200: {
            "description": "Received: any 2xx; a JSON answer with a `code` must have code 0 "
            '(e.g. `{"code": 0, "message": "success"}`). Anything else is retried after '
            "10 s, 30 s, 1 min, 5 min, 10 min; HTTP 410 stops the retries."
        }
    },
)
async def task_ended_callback(body: CallbackBody) -> None:
    """POSTed to the task's `callbackUrl` with its `callbackHeaders` when the task succeeds,
    fails, times out or is canceled. Signed per Standard Webhooks with the token's callback
    secret: `webhook-id` (the same on every retry), `webhook-timestamp`, `webhook-signature`."""
