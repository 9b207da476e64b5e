"""``GET /metrics``: the Prometheus text format, for an admin token or the metrics token.

Not in the OpenAPI document (``include_in_schema=False``): it is for a scraper, not for apps.
A scraper that holds no gateway token uses ``GATEWAY_METRICS_TOKEN`` (compared in constant
time); any other bearer is authenticated as a gateway token and needs the admin scope (401
without a valid one, 403 without the scope). With ``GATEWAY_METRICS_ENABLED=false`` the route
answers 404 like an unknown one.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from ability_gateway.server.auth.service import SCOPE_ADMIN
from ability_gateway.server.deps import Gateway, get_current_token
from ability_gateway.server.errors import NotFound
from ability_gateway.server.metrics import collectors
from ability_gateway.server.state import GatewayState

router = APIRouter(tags=["metrics"])


def _is_metrics_token(gateway: GatewayState, authorization: str | None) -> bool:
    expected = gateway.settings.metrics_token
    if expected is None or not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), expected.get_secret_value().encode()
    )


@router.get("/metrics", operation_id="get_metrics", include_in_schema=False)
async def get_metrics(
    request: Request,
    gateway: Gateway,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """This process's metrics (every process's in multiprocess mode) and the job gauges."""
    if not gateway.settings.metrics_enabled:
        raise NotFound("No such endpoint")
    if not _is_metrics_token(gateway, authorization):
        principal = await get_current_token(request, gateway, authorization)
        principal.require(SCOPE_ADMIN)
    gateway.metrics.refresh_circuits(gateway.executors.all())
    body = await collectors.render(gateway.db, gateway.runner.deps.jobs.kinds)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
