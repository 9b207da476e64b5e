"""``/api/admin/tokens``: create, list, read, change, revoke and rotate tokens (admin scope).

A token's value and callback secret are in the answer of its creation and of a rotation
only. The CLI's token commands call the same services (``auth/service.py``, ``auth/admin.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from ability_gateway.server.auth import admin
from ability_gateway.server.auth.schemas import (
    CreatedTokenView,
    CreateToken,
    Rotate,
    RotatedToken,
    TokenPage,
    TokenQuotas,
    TokenView,
    UpdateToken,
)
from ability_gateway.server.auth.service import SCOPE_ADMIN, create_token
from ability_gateway.server.deps import CurrentToken, Gateway
from ability_gateway.server.errors import ErrorBody
from ability_gateway.server.http import JSONResponse
from ability_gateway.server.jsonbody import read_model
from ability_gateway.server.openapi import ERROR_RESPONSES
from ability_gateway.server.state import GatewayState
from ability_gateway.server.usage.service import UNSET, set_quotas

router = APIRouter(prefix="/api/admin/tokens", tags=["admin: tokens"])

TokenId = Annotated[str, Path(max_length=64, description="The token's id (`tok_…`).")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such token"}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "The token is revoked or expired"}
}


def _body(model: type[Any], example: dict[str, Any], required: bool = True) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    content = {"application/json": {"schema": ref, "example": example}}
    return {"requestBody": {"required": required, "content": content}}


@router.post(
    "",
    operation_id="create_token",
    status_code=201,
    response_model=CreatedTokenView,
    responses=ERROR_RESPONSES,
    openapi_extra=_body(
        CreateToken,
        {
            "name": "shop-app",
            "rateLimitPerMinute": 600,
            "expiresInDays": 90,
            "quotas": {"dailyInvocations": 10000},
        },
    ),
)
async def create(request: Request, gateway: Gateway, token: CurrentToken) -> JSONResponse:
    """Create a token: its value and callback secret are shown in this answer only."""
    token.require(SCOPE_ADMIN)
    body = await read_model(request, CreateToken)
    created = await create_token(
        gateway.db,
        body.name,
        admin=body.admin,
        expires_in_days=body.expiresInDays,
        rate_limit_per_minute=body.rateLimitPerMinute,
        max_concurrent_tasks=body.maxConcurrentTasks,
    )
    if body.quotas is not None:
        await _set_quotas(gateway, created.id, body.quotas)
    view = await admin.get(gateway.db, created.id)
    answer = {**view, "token": created.token, "callbackSecret": created.callback_secret}
    return JSONResponse(answer, status_code=201)


@router.get("", operation_id="list_tokens", response_model=TokenPage, responses=ERROR_RESPONSES)
async def list_tokens(
    gateway: Gateway,
    token: CurrentToken,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    include_revoked: Annotated[bool, Query(alias="includeRevoked")] = True,
) -> JSONResponse:
    """Every token (oldest first), without values or secrets."""
    token.require(SCOPE_ADMIN)
    items, next_cursor = await admin.list_all(
        gateway.db, include_revoked=include_revoked, after=cursor, limit=limit
    )
    return JSONResponse({"items": items, "nextCursor": next_cursor})


@router.get(
    "/{token_id}",
    operation_id="get_token",
    response_model=TokenView,
    responses={**ERROR_RESPONSES, **_NOT_FOUND},
)
async def get_token(token_id: TokenId, gateway: Gateway, token: CurrentToken) -> JSONResponse:
    token.require(SCOPE_ADMIN)
    return JSONResponse(await admin.get(gateway.db, token_id))


@router.patch(
    "/{token_id}",
    operation_id="update_token",
    response_model=TokenView,
    responses={**ERROR_RESPONSES, **_NOT_FOUND, **_CONFLICT},
    openapi_extra=_body(UpdateToken, {"maxConcurrentTasks": 20, "rateLimitPerMinute": None}),
)
async def update_token(
    token_id: TokenId, request: Request, gateway: Gateway, token: CurrentToken
) -> JSONResponse:
    """Change the name, limits or expiry; only the fields sent change (`null` removes)."""
    token.require(SCOPE_ADMIN)
    body = await read_model(request, UpdateToken)
    sent = body.model_fields_set
    columns = {
        "name": "name",
        "rateLimitPerMinute": "rate_limit_per_minute",
        "maxConcurrentTasks": "max_concurrent_tasks",
    }
    values = {column: getattr(body, field) for field, column in columns.items() if field in sent}
    if "name" in values and values["name"] is None:
        del values["name"]  # a token always has a name
    expires: Any = ...
    if "expiresInDays" in sent:
        days = body.expiresInDays
        expires = None if days is None else int(days * 86_400_000)
    view = await admin.change(gateway.db, gateway.token_cache, token_id, values, expires)
    if body.quotas is not None:
        await _set_quotas(gateway, token_id, body.quotas)
        view = await admin.get(gateway.db, token_id)
    return JSONResponse(view)


async def _set_quotas(gateway: GatewayState, token_id: str, quotas: TokenQuotas) -> None:
    """The quotas sent (``null`` removes one; one left out stays)."""
    sent = quotas.model_fields_set
    await set_quotas(
        gateway.db,
        token_id,
        quotas.dailyInvocations if "dailyInvocations" in sent else UNSET,
        quotas.dailyInvocationsByAbility if "dailyInvocationsByAbility" in sent else UNSET,
        quotas.mediaBytes if "mediaBytes" in sent else UNSET,
        cache=gateway.token_cache,
    )


@router.post(
    "/{token_id}/revoke",
    operation_id="revoke_token",
    response_model=TokenView,
    responses={**ERROR_RESPONSES, **_NOT_FOUND},
)
async def revoke_token(token_id: TokenId, gateway: Gateway, token: CurrentToken) -> JSONResponse:
    """Revoke: every node refuses it within `GATEWAY_AUTH_CACHE_SECONDS` (this one at once)."""
    token.require(SCOPE_ADMIN)
    return JSONResponse(await admin.revoke(gateway.db, gateway.token_cache, token_id))


@router.post(
    "/{token_id}/rotate",
    operation_id="rotate_token",
    response_model=RotatedToken,
    responses={**ERROR_RESPONSES, **_NOT_FOUND, **_CONFLICT},
    openapi_extra=_body(Rotate, {"overlapSeconds": 86400}, required=False),
)
async def rotate_token(
    token_id: TokenId, request: Request, gateway: Gateway, token: CurrentToken
) -> JSONResponse:
    """A new value (shown once); the old one works for `overlapSeconds` more."""
    token.require(SCOPE_ADMIN)
    body = await read_model(request, Rotate, empty_ok=True)
    rotated = await admin.rotate_value(
        gateway.db, gateway.token_cache, token_id, body.overlapSeconds
    )
    return JSONResponse({"tokenInfo": rotated.view, "token": rotated.token})


@router.post(
    "/{token_id}/rotate_secret",
    operation_id="rotate_callback_secret",
    response_model=RotatedToken,
    responses={**ERROR_RESPONSES, **_NOT_FOUND, **_CONFLICT},
    openapi_extra=_body(Rotate, {"overlapSeconds": 86400}, required=False),
)
async def rotate_secret(
    token_id: TokenId, request: Request, gateway: Gateway, token: CurrentToken
) -> JSONResponse:
    """A new callback secret (shown once); both sign callbacks for `overlapSeconds`."""
    token.require(SCOPE_ADMIN)
    body = await read_model(request, Rotate, empty_ok=True)
    rotated = await admin.rotate_secret(gateway.db, token_id, body.overlapSeconds)
    return JSONResponse({"tokenInfo": rotated.view, "callbackSecret": rotated.callback_secret})
