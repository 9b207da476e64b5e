"""Callback visibility and manual redelivery.

Manual redelivery is rate-limited per task (its delivery), on every node together: one in
flight at a time and ``GATEWAY_CALLBACK_REDELIVER_PER_MINUTE`` a minute, else 429 with
``Retry-After``. The attempts list keeps every scheduled attempt and the latest
``GATEWAY_CALLBACK_MANUAL_ATTEMPTS_KEPT`` manual ones.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.engine import RowMapping

from ability_gateway.server.auth.limits import RateLimited
from ability_gateway.server.auth.service import Principal
from ability_gateway.server.callbacks import repository
from ability_gateway.server.callbacks.repository import DELIVER_JOB
from ability_gateway.server.callbacks.sender import attempt, log_attempt
from ability_gateway.server.errors import NotFound, shorten
from ability_gateway.server.runner import repository as jobs
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks import repository as tasks
from ability_gateway.server.tasks.bodies import iso_time
from ability_gateway.server.tasks.service import check_task_id


def delivery_view(delivery: RowMapping | None, attempts: list[RowMapping]) -> dict[str, Any]:
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
    return delivery_view(delivery, attempts)


async def redeliver(gateway: GatewayState, principal: Principal, task_id: str) -> dict[str, Any]:
    """Send the delivery of a task of the caller's once more now (see ``redeliver_task``)."""
    await _own_task(gateway, principal, task_id)
    return await redeliver_task(gateway, task_id)


async def redeliver_task(gateway: GatewayState, task_id: str) -> dict[str, Any]:
    """Send a task's delivery once more now: same ``webhook-id``, one attempt, no new
    schedule; at most one manual attempt in flight and a few a minute per delivery."""
    async with gateway.db.read() as conn:
        current, _ = await repository.for_task(conn, task_id)
    if current is None:
        raise NotFound(f"Task {shorten(task_id)!r} has no callback to redeliver")
    settings = gateway.settings
    delivery_id = current["id"]
    await _start_redelivery(gateway, delivery_id)
    keep = settings.callback_manual_attempts_kept
    try:
        async with gateway.db.read() as conn:
            delivery = await repository.load(conn, delivery_id)
        assert delivery is not None
        result = await attempt(
            gateway.callback_client, delivery, timeout=settings.callback_timeout_seconds
        )
    except BaseException:
        await gateway.db.run_write(
            lambda conn: repository.end_redelivery(conn, delivery_id, keep_manual=keep)
        )
        raise
    state = "delivered" if result.ok else delivery["state"]
    gateway.metrics.delivery_attempt("delivered" if result.ok else "failed", None)
    log_attempt(
        delivery,
        delivery["attempts"] + 1,
        result,
        "delivered" if result.ok else "failed",
        manual=True,
    )

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
        repository.end_redelivery(conn, delivery["id"], keep_manual=keep)
        if result.ok:  # the schedule has nothing left to do
            jobs.end_for_task(conn, task_id, "done", kind=DELIVER_JOB)

    await gateway.db.run_write(write)
    async with gateway.db.read() as conn:
        after, attempts = await repository.for_task(conn, task_id)
    return delivery_view(after, attempts)


async def _start_redelivery(gateway: GatewayState, delivery_id: str) -> None:
    """Take the delivery's manual-redelivery place, or answer 429 with ``Retry-After``."""
    settings = gateway.settings
    per_minute = settings.callback_redeliver_per_minute
    in_flight_ms = int(settings.callback_timeout_seconds * 1000)
    wait_ms, busy = await gateway.db.run_write(
        lambda conn: repository.start_redelivery(
            conn,
            delivery_id,
            per_minute=per_minute,
            in_flight_ms=in_flight_ms,
            # A node that died mid-attempt leaves its mark: it lapses a little after the timeout.
            stale_ms=in_flight_ms + 5000,
        )
    )
    if wait_ms <= 0:
        return
    retry_after = {"Retry-After": str(max(1, math.ceil(wait_ms / 1000)))}
    gateway.metrics.refused("redelivery")
    if busy:
        raise RateLimited(
            "A redelivery of this task's callback is already in flight", headers=retry_after
        )
    raise RateLimited(
        f"At most {per_minute} redeliveries a minute of this task's callback",
        headers=retry_after,
    )
