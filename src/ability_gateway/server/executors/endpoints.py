"""``GET /api/admin/executors``: each Coze account's state (admin scope)."""

from __future__ import annotations

from fastapi import APIRouter

from ability_gateway.server.admin.service import executor_views
from ability_gateway.server.auth.service import SCOPE_ADMIN
from ability_gateway.server.deps import CurrentToken, Gateway
from ability_gateway.server.http import JSONResponse
from ability_gateway.server.openapi import ERROR_RESPONSES

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.get("/executors", operation_id="list_executors", responses=ERROR_RESPONSES)
async def list_executors(gateway: Gateway, token: CurrentToken) -> JSONResponse:
    """Executors with their circuit state (and why it is open), load and limits."""
    token.require(SCOPE_ADMIN)
    return JSONResponse({"items": await executor_views(gateway)})
