"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from ability_gateway.server.deps import Gateway
from ability_gateway.server.errors import DatabaseUnavailable, ServiceUnavailable
from ability_gateway.server.http import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="get_health")
async def get_health() -> JSONResponse:
    """The process is up."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", operation_id="get_readiness")
async def get_readiness(gateway: Gateway) -> JSONResponse:
    """The database answers."""
    try:
        async with gateway.db.read() as conn:
            await conn.execute(text("SELECT 1"))
    except DatabaseUnavailable:
        raise  # the outage's own 503 (Retry-After, logged once)
    except Exception as exc:
        raise ServiceUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    return JSONResponse({"status": "ready"})
