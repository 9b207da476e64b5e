"""``GET /api/admin/usage`` (admin scope: every token) and ``GET /api/usage`` (a token's own)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ability_gateway.server.auth.service import SCOPE_ADMIN
from ability_gateway.server.deps import CurrentToken, Gateway
from ability_gateway.server.http import JSONResponse
from ability_gateway.server.openapi import ERROR_RESPONSES
from ability_gateway.server.usage import service
from ability_gateway.server.usage.schemas import Usage

router = APIRouter(tags=["usage"])

Since = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=64,
        description="ISO 8601 with a zone (`2026-12-02T00:00:00+08:00`); default: `to` − 24 h.",
    ),
]
Until = Annotated[
    str | None,
    Query(alias="to", max_length=64, description="ISO 8601 with a zone, exclusive; default: now."),
]
GroupBy = Annotated[
    str | None,
    Query(
        alias="groupBy",
        max_length=64,
        description="Comma-separated: `token`, `ability` and at most one of `day` / `hour` "
        "(days in `GATEWAY_QUOTA_TIMEZONE`); none: one total row.",
    ),
]
AbilityId = Annotated[str | None, Query(alias="abilityId", max_length=100)]


@router.get(
    "/api/admin/usage",
    operation_id="admin_get_usage",
    response_model=Usage,
    responses=ERROR_RESPONSES,
    tags=["admin"],
)
async def get_admin_usage(
    gateway: Gateway,
    token: CurrentToken,
    since: Since = None,
    until: Until = None,
    group_by: GroupBy = None,
    token_id: Annotated[str | None, Query(alias="tokenId", max_length=64)] = None,
    ability_id: AbilityId = None,
) -> JSONResponse:
    """Every token's usage (or one's): calls by outcome, cache hits, p50/p95, Coze tokens."""
    token.require(SCOPE_ADMIN)
    answer = await service.usage(
        gateway.db,
        gateway.settings.quota_timezone,
        since=since,
        until=until,
        group_by=group_by,
        token_id=token_id,
        ability_id=ability_id,
    )
    return JSONResponse(answer)


@router.get(
    "/api/usage",
    operation_id="get_usage",
    response_model=Usage,
    responses=ERROR_RESPONSES,
)
async def get_usage(
    gateway: Gateway,
    token: CurrentToken,
    since: Since = None,
    until: Until = None,
    group_by: GroupBy = None,
    ability_id: AbilityId = None,
) -> JSONResponse:
    """Your token's usage and quotas (the same rows as the admin's, of your token only)."""
    answer = await service.own_usage(
        gateway.db,
        gateway.settings.quota_timezone,
        token,
        since=since,
        until=until,
        group_by=group_by,
        ability_id=ability_id,
    )
    return JSONResponse(answer)
