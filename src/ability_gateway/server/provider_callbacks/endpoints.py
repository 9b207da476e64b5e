"""Completion notices of external generation jobs: ``POST /api/provider_callbacks/coze/{id}``.

Signed per Standard Webhooks with ``GATEWAY_PROVIDER_CALLBACK_SECRET``; the body names its
job (``externalId``, equal to the path's id); idempotent (a repeated notice, or one for a
task already finished, answers 200 and changes nothing); an unknown id is a 404, so the
sender retries while the gateway is still recording the id it is about to be told about.
The body is capped (1 MB) before it is read, by ``bodylimit``. See ``service`` for the steps.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from ability_gateway.server.deps import Gateway
from ability_gateway.server.http import JSONResponse
from ability_gateway.server.provider_callbacks import service
from ability_gateway.server.tasks.schemas import ErrorBody

router = APIRouter(prefix="/api/provider_callbacks", tags=["provider callbacks"])


@router.post(
    "/coze/{external_id}",
    operation_id="receive_coze_job_notice",
    responses={
        400: {"model": ErrorBody, "description": "Not JSON, or a field is wrong (named)"},
        401: {"model": ErrorBody, "description": "Missing or bad signature"},
        404: {"model": ErrorBody, "description": "No task waits on this job id"},
        413: {"model": ErrorBody, "description": "The notice is larger than 1 MB"},
        503: {"model": ErrorBody, "description": "Notices are not configured"},
    },
)
async def receive_coze_job_notice(
    external_id: str, request: Request, gateway: Gateway
) -> JSONResponse:
    """A generation job finished: `{"externalId", "status": "succeeded"|"failed", "images", …}`.

    A notice received before (same `webhook-id`, within the signature's tolerance window)
    answers `{"code": 0, "message": "already received"}` and changes nothing.
    """
    body = await request.body()
    outcome = await service.receive_notice(gateway, external_id, request.headers, body)
    return JSONResponse({"code": 0, "message": outcome})
