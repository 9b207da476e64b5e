"""``GET /api/admin/executors``: each Coze account's state (admin scope)."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter

from ability_gateway.server.admin.service import RECENT_WINDOW_MS, recent_outcomes
from ability_gateway.server.auth.service import SCOPE_ADMIN
from ability_gateway.server.deps import CurrentToken, Gateway
from ability_gateway.server.http import JSONResponse
from ability_gateway.server.openapi import ERROR_RESPONSES
from ability_gateway.server.runner.queue import running_with_key
from ability_gateway.server.tasks.steps import TASK_JOB

router = APIRouter(prefix="/api/admin", tags=["admin"])
_NO_CALLS = {
    "windowSeconds": RECENT_WINDOW_MS // 1000,
    "calls": 0,
    "failures": 0,
    "codes": {},
    "p50Ms": None,
    "p95Ms": None,
}


@router.get("/executors", operation_id="list_executors", responses=ERROR_RESPONSES)
async def list_executors(gateway: Gateway, token: CurrentToken) -> JSONResponse:
    """Executors with their circuit state (and why it is open), load and limits."""
    token.require(SCOPE_ADMIN)
    recent = await recent_outcomes(gateway)
    items = []
    for executor in gateway.executors.all():
        # A task's job is keyed by its executor: its steps running now, on every node.
        running = await gateway.db.run_write(
            partial(running_with_key, kind=TASK_JOB, key=executor.id)
        )
        items.append(
            {
                "id": executor.id,
                "baseUrl": executor.base_url,
                "auth": executor.auth.kind,
                "weight": executor.weight,
                "maxConcurrency": executor.max_concurrency,
                "qps": executor.qps,
                "allowAsync": executor.allow_async,
                "state": executor.breaker.state,
                "reason": executor.breaker.reason,
                "consecutiveFailures": executor.breaker.failures,
                "inFlight": executor.in_flight,
                "runningTasks": running,
                # The last hour's calls: counts per Coze code, p50/p95 latency.
                "recent": recent.get(executor.id, _NO_CALLS),
            }
        )
    return JSONResponse({"items": items})
