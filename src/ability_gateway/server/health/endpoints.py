"""Liveness and readiness.

    /healthz   the process answers (nothing else is looked at)
    /readyz    the database answers a query and the media storage works (local: an empty
               object written and deleted; S3: a listing) ──► 200 with each executor's
               breaker state; either failing ──► 503, the uniform error body

An open breaker is reported, never a reason for 503: an upstream outage would otherwise
take every node out of the load balancer at once, task reads and the console included.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from sqlalchemy import text

from ability_gateway.server.deps import Gateway
from ability_gateway.server.errors import DatabaseUnavailable, ServiceUnavailable
from ability_gateway.server.health.schemas import Readiness
from ability_gateway.server.http import JSONResponse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

# A hung mount or an unreachable bucket answers 503 in this time, not when it gives up.
STORAGE_TIMEOUT_SECONDS = 5.0


@router.get("/healthz", operation_id="get_health")
async def get_health() -> JSONResponse:
    """The process is up."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", operation_id="get_readiness", response_model=Readiness)
async def get_readiness(gateway: Gateway) -> JSONResponse:
    """The database answers and the media storage works (503 otherwise); each executor's
    circuit state is reported without deciding readiness."""
    try:
        async with gateway.db.read() as conn:
            await conn.execute(text("SELECT 1"))
    except DatabaseUnavailable:
        raise  # the outage's own 503 (Retry-After, logged once)
    except Exception as exc:
        raise ServiceUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    try:
        async with asyncio.timeout(STORAGE_TIMEOUT_SECONDS):
            await gateway.media.storage.check()
    except Exception as exc:
        # The detail (a path, a bucket) is for the operator's log, not the public answer;
        # its first line (obstore's errors go on with a debug dump).
        detail = next(iter(str(exc).splitlines()), "")
        logger.warning("not ready: media storage: %s: %s", type(exc).__name__, detail)
        raise ServiceUnavailable(f"media storage unavailable: {type(exc).__name__}") from exc
    executors = [
        # No reason: /readyz is unauthenticated, and Coze's error text is for admins
        # (GET /executors).
        {"id": e.id, "state": e.breaker.state}
        for e in gateway.executors.all()
    ]
    return JSONResponse({"status": "ready", "executors": executors})
