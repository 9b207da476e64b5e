"""Tasks after they are accepted: get, list and cancel them (spec §3.3), and finish the
ones waiting on an external generation job from its completion notice.

Invocations themselves (accept, run or enqueue, wait, answer) are in ``tasks/invoke.py``;
the checks of an invocation's request in ``tasks/requests.py``.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.engine import Connection

from ability_gateway.server.abilities.catalog import AbilityDefinition
from ability_gateway.server.auth.service import Principal
from ability_gateway.server.errors import (
    BadRequest,
    Conflict,
    FieldError,
    NotFound,
    shorten,
)
from ability_gateway.server.runner import repository as jobs_repository
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks import bodies, repository, terminal
from ability_gateway.server.tasks.outcomes import (
    TaskSnapshot,
    external_failure,
    external_shaped,
    external_success,
)
from ability_gateway.server.tasks.phases import External
from ability_gateway.server.tasks.schemas import TERMINAL_STATUSES
from ability_gateway.server.tasks.steps import TASK_JOB


def get_ability(gateway: GatewayState, ability_id: str) -> AbilityDefinition:
    ability = gateway.catalog.get(ability_id)
    if ability is None:
        raise NotFound(f"Ability {shorten(ability_id)!r} does not exist")
    return ability


# --- queries and cancel ----------------------------------------------------------------


task_view = bodies.task_view


TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_task_id(task_id: str) -> None:
    """Ids are ours: anything else (NUL bytes, 1 MB of junk) is simply not a task."""
    if not TASK_ID.match(task_id):
        raise NotFound(f"Task {shorten(task_id)!r} does not exist")


async def get_task(gateway: GatewayState, principal: Principal, task_id: str) -> dict[str, Any]:
    check_task_id(task_id)
    async with gateway.db.read() as conn:
        row = await repository.get_task(conn, task_id, principal.token_id)
    if row is None:
        raise NotFound(f"Task {shorten(task_id)!r} does not exist")
    return task_view(row)


async def list_tasks(
    gateway: GatewayState,
    principal: Principal,
    *,
    status: str | None,
    ability_id: str | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    if cursor is not None and not TASK_ID.match(cursor):
        raise BadRequest(
            "Invalid cursor", [FieldError("cursor", "is not a cursor from nextCursor")]
        )
    async with gateway.db.read() as conn:
        rows = await repository.list_tasks(
            conn,
            principal.token_id,
            status=status,
            ability_id=ability_id,
            cursor=cursor,
            limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [task_view(r) for r in rows],
        "nextCursor": rows[-1]["id"] if more and rows else None,
    }


async def cancel_task(gateway: GatewayState, principal: Principal, task_id: str) -> dict[str, Any]:
    check_task_id(task_id)

    def cancel(conn: Connection) -> dict[str, Any] | None:
        jobs_repository.lock_for_task(conn, task_id)
        row = terminal.cancel(conn, task_id, principal.token_id)
        if row is None:
            return None
        jobs_repository.end_for_task(conn, task_id, "canceled", kind=TASK_JOB)
        return dict(row)

    canceled = await gateway.db.run_write(cancel)
    if canceled is None:
        async with gateway.db.read() as conn:
            current = await repository.get_task(conn, task_id, principal.token_id)
        if current is None:
            raise NotFound(f"Task {shorten(task_id)!r} does not exist")
        raise Conflict(
            f"Task {task_id!r} already finished ({current['status']}) and cannot be canceled",
            extra={"taskId": task_id, "status": current["status"]},
        )
    gateway.task_events.notify(task_id)
    async with gateway.db.read() as conn:
        row = await repository.get_task(conn, task_id, principal.token_id)
    assert row is not None
    return task_view(row)


# --- inbound completion notices of external generation jobs ----------------------------


async def complete_external_job(
    gateway: GatewayState, external_id: str, notice: dict[str, Any]
) -> bool:
    """Finish the task waiting on ``external_id`` from a verified notice.

    False when no task waits on that id. Idempotent: a task that already finished
    (an earlier notice, a poll, a cancel, a timeout) is left as it is. Outputs are
    mirrored first, outside any transaction.
    """
    async with gateway.db.read() as conn:
        waiting = await repository.waiting_on(conn, external_id)
    if waiting is None:
        return False
    found, token_id, status = waiting
    if status in TERMINAL_STATUSES:
        return True  # ended already (an earlier notice, a poll, a cancel): download nothing
    succeeded = str(notice.get("status", "")).lower() in (
        "succeeded",
        "success",
        "done",
        "completed",
    )
    shaped = external_shaped(notice) if succeeded else {}
    warnings = await gateway.media.mirror_all(shaped, token_id, found) if succeeded else []

    def complete(conn: Connection) -> str | None:
        jobs_repository.lock_for_task(conn, found)
        row = repository.find_by_external_id(conn, external_id)
        if row is None or row["status"] in TERMINAL_STATUSES:
            return None
        ability = gateway.catalog.get(row["ability_id"])
        snapshot = TaskSnapshot(
            id=row["id"],
            ability_id=row["ability_id"],
            executor_id=row["executor_id"],
            status=row["status"],
            request_id=row["request_id"],
            inputs=row["inputs"] or {},
            client_metadata=row["client_metadata"],
            remaining_s=1.0,
            external_id=external_id,
        )
        phase = External(external_id=external_id, execute_id=row["execute_id"])
        if succeeded and ability is not None:
            result = external_success(ability, snapshot, [], phase, notice, None, shaped, warnings)
        else:
            result = external_failure(snapshot, [], phase, notice, None)
        assert result.writes is not None
        result.writes(conn)
        jobs_repository.end_for_task(conn, row["id"], "done", kind=TASK_JOB)
        return str(row["id"])

    task_id = await gateway.db.run_write(complete)
    if task_id:
        gateway.task_events.notify(task_id)
    return True
