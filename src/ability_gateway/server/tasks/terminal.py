"""The two ways a task ends, and what ending brings with it.

Every terminal transition (succeeded, failed, timeout by a step or a notice; canceled by
the caller; failed by the sweeper) goes through here, so that a task with a
``callbackUrl`` gets its delivery written in the same transaction as its final state
(the outbox: a callback is never lost between the two).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, RowMapping

from ability_gateway.server.callbacks.repository import enqueue_for_task
from ability_gateway.server.tasks import repository
from ability_gateway.server.tasks.bodies import callback_body


def finish(
    conn: Connection,
    task_id: str,
    *,
    status: str,
    log_id: int | None = None,
    execute_id: str | None = None,
    result_payload: dict[str, Any] | None = None,
    error_payload: dict[str, Any] | None = None,
) -> RowMapping | None:
    row = repository.finish_task(
        conn,
        task_id,
        status=status,
        log_id=log_id,
        execute_id=execute_id,
        result_payload=result_payload,
        error_payload=error_payload,
    )
    if row is not None:
        enqueue_for_task(conn, row, callback_body(row))
    return row


def cancel(conn: Connection, task_id: str, token_id: str) -> RowMapping | None:
    row = repository.cancel_task(conn, task_id, token_id)
    if row is not None:
        enqueue_for_task(conn, row, callback_body(row))
    return row
