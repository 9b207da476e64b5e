"""Completion notices of external generation jobs: ``POST /api/provider_callbacks/coze/{id}``.

Signed per Standard Webhooks with ``GATEWAY_PROVIDER_CALLBACK_SECRET``; idempotent
(a repeated notice, or one for a task already finished, answers 200 and changes
nothing); an unknown id is a 404, so the sender retries while the gateway is still
recording the id it is about to be told about.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ability_gateway.server.deps import Gateway
from ability_gateway.server.errors import (
    BadRequest,
    FieldError,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from ability_gateway.server.http import JSONResponse
from ability_gateway.server.tasks import service
from ability_gateway.server.tasks.schemas import ErrorBody

router = APIRouter(prefix="/api/provider_callbacks", tags=["provider callbacks"])

MAX_NOTICE_BYTES = 1024 * 1024
_EXTERNAL_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


@router.post(
    "/coze/{external_id}",
    operation_id="receive_coze_job_notice",
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody, "description": "Missing or bad signature"},
        404: {"model": ErrorBody, "description": "No task waits on this job id"},
    },
)
async def receive_coze_job_notice(
    external_id: str, request: Request, gateway: Gateway
) -> JSONResponse:
    """A generation job finished: `{"status": "succeeded"|"failed", "images": [...], ...}`."""
    secret = gateway.settings.provider_callback_secret
    if secret is None:
        raise ServiceUnavailable("Completion notices are not configured on this gateway")
    body = await request.body()
    if len(body) > MAX_NOTICE_BYTES:
        raise BadRequest("The notice is too large")
    try:
        notice: Any = Webhook(secret.get_secret_value()).verify(body, dict(request.headers))
    except (WebhookVerificationError, ValueError) as exc:
        raise Unauthorized(f"The notice's signature does not verify: {exc}") from exc
    if not isinstance(notice, dict):
        raise BadRequest("The notice must be a JSON object")
    errors = []
    if str(notice.get("status", "")).lower() not in ("succeeded", "failed"):
        errors.append(FieldError("status", "must be succeeded or failed"))
    for name in ("images", "texts"):
        if name in notice and not isinstance(notice[name], list):
            errors.append(FieldError(name, "must be a list"))
    if errors:
        raise BadRequest("The notice is invalid", errors)
    if not _EXTERNAL_ID.match(external_id) or not await service.complete_external_job(
        gateway, external_id, notice
    ):
        raise NotFound(f"No task waits on job {external_id!r}")
    return JSONResponse({"code": 0, "message": "ok"})
