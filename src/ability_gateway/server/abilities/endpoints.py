"""``GET /api/abilities`` and ``GET /api/abilities/{id}`` (spec §3.1)."""

from __future__ import annotations

from fastapi import APIRouter

from ability_gateway.server.abilities.schemas import Ability, AbilityList
from ability_gateway.server.deps import CurrentToken, Gateway
from ability_gateway.server.errors import NotFound, shorten
from ability_gateway.server.http import JSONResponse
from ability_gateway.server.openapi import ERROR_RESPONSES

router = APIRouter(prefix="/api/abilities", tags=["abilities"])


@router.get(
    "",
    response_model=AbilityList,
    operation_id="list_abilities",
    responses=ERROR_RESPONSES,
)
async def list_abilities(gateway: Gateway, _token: CurrentToken) -> JSONResponse:
    catalog = gateway.catalog
    return JSONResponse({"items": [catalog.public_view(a.id) for a in catalog.all()]})


@router.get(
    "/{ability_id}",
    response_model=Ability,
    operation_id="get_ability",
    responses=ERROR_RESPONSES,
)
async def get_ability(ability_id: str, gateway: Gateway, _token: CurrentToken) -> JSONResponse:
    if gateway.catalog.get(ability_id) is None:
        raise NotFound(f"Ability {shorten(ability_id)!r} does not exist")
    return JSONResponse(gateway.catalog.public_view(ability_id))
