"""Callback visibility and manual redelivery."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import RowMapping

from ability_gateway.server.auth.service import Principal
from ability_gateway.server.callbacks import repository
from ability_gateway.server.callbacks.repository import DELIVER_JOB
from ability_gateway.server.callbacks.sender import attempt
from ability_gateway.server.errors import NotFound, shorten
from ability_gateway.server.runner import repository as jobs
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks import repository as tasks
from ability_gateway.server.tasks.service import check_task_id, iso_time


def _view(delivery: RowMapping | None, attempts: list[RowMapping]) -> dict[str, Any]:
    if delivery is None:
        return {"delivery": None, "attempts": []}

    def when(ms: int | None) -> str | None:
        return None if ms is None else iso_time(ms)

    return {
        "delivery": {
            "id": delivery["id"],
            "url": delivery["url"],
            "state": delivery["state"],
            "attemptCount": delivery["attempts"],
            "lastStatus": delivery["last_status"],
            "lastError": delivery["last_error"],
            "nextAttemptTime": when(delivery["next_attempt_at"])
            if delivery["state"] == "pending"
            else None,
            "deliveredTime": when(delivery["delivered_at"]),
            "createTime": iso_time(delivery["created_at"]),
        },
        "attempts": [
            {
                "number": a["number"],
                "manual": bool(a["manual"]),
                "time": iso_time(a["started_at"]),
                "durationMs": a["duration_ms"],
                "httpStatus": a["http_status"],
                "error": a["error"],
                "response": a["response_excerpt"],
            }
            for a in attempts
        ],
    }


async def _own_task(gateway: GatewayState, principal: Principal, task_id: str) -> None:
    check_task_id(task_id)
    async with gateway.db.read() as conn:
        if await tasks.get_task(conn, task_id, principal.token_id) is None:
            raise NotFound(f"Task {shorten(task_id)!r} does not exist")


async def list_deliveries(
    gateway: GatewayState, principal: Principal, task_id: str
) -> dict[str, Any]:
    await _own_task(gateway, principal, task_id)
    async with gateway.db.read() as conn:
        delivery, attempts = await repository.for_task(conn, task_id)
    return _view(delivery, attempts)


async def redeliver(gateway: GatewayState, principal: Principal, task_id: str) -> dict[str, Any]:
    """Send the delivery once more now: same ``webhook-id``, one attempt, no new schedule."""
    await _own_task(gateway, principal, task_id)
    async with gateway.db.read() as conn:
        current, _ = await repository.for_task(conn, task_id)
        if current is None:
            raise NotFound(f"Task {shorten(task_id)!r} has no callback to redeliver")
        delivery = await repository.load(conn, current["id"])
    assert delivery is not None
    result = await attempt(
        gateway.callback_client, delivery, timeout=gateway.settings.callback_timeout_seconds
    )
    state = "delivered" if result.ok else delivery["state"]

    def write(conn: Any) -> None:
        repository.record_attempt(
            conn,
            delivery["id"],
            number=delivery["attempts"] + 1,
            manual=True,
            duration_ms=result.duration_ms,
            http_status=result.http_status,
            error=result.error,
            excerpt=result.excerpt,
            node=gateway.runner.owner,
            state=state,
            delay_ms=None,
        )
        if result.ok:  # the schedule has nothing left to do
            jobs.end_for_task(conn, task_id, "done", kind=DELIVER_JOB)

    await gateway.db.run_write(write)
    return await list_deliveries(gateway, principal, task_id)
