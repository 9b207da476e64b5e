"""Request dependencies that read like the spec: ``Gateway``, ``CurrentToken``."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Header, Request

from ability_gateway.server.auth.limits import RateLimited
from ability_gateway.server.auth.service import Principal, authenticate
from ability_gateway.server.logs import annotate
from ability_gateway.server.state import GatewayState


async def get_gateway(request: Request) -> GatewayState:
    return cast(GatewayState, request.app.state.gateway)


Gateway = Annotated[GatewayState, Depends(get_gateway)]


async def get_current_token(
    request: Request,
    gateway: Gateway,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    principal = await authenticate(gateway.db, gateway.token_cache, authorization)
    annotate(request.scope, tokenId=principal.token_id)  # on the request's log line
    if gateway.last_used.mark(principal.token_id):
        gateway.track(gateway.last_used.flush(gateway.db))
    if principal.rate_limit_per_minute:
        try:
            headers = await gateway.limiter.hit(principal.token_id, principal.rate_limit_per_minute)
        except RateLimited:
            gateway.metrics.refused("rate_limit")
            raise
        # Added to the response by the request-id middleware.
        request.scope.setdefault("state", {})["extra_headers"] = headers
    return principal


CurrentToken = Annotated[Principal, Depends(get_current_token)]
