"""The two ways a task ends, and what ending brings with it.

Every terminal transition (succeeded, failed, timeout by a step or a notice; canceled by
the caller; failed by the sweeper) goes through here, so that a task with a
``callbackUrl`` gets its delivery written in the same transaction as its final state
(the outbox: a callback is never lost between the two), and the task is added to its
hour's usage rollup in that transaction too (one upsert, ``usage/repository.py``).
Its ``task.transition`` log line waits for that transaction's commit.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Connection, RowMapping

from ability_gateway.server.callbacks.repository import enqueue_for_task
from ability_gateway.server.logs import log_after_commit
from ability_gateway.server.tasks import repository
from ability_gateway.server.tasks.bodies import callback_body
from ability_gateway.server.usage.repository import record_task_end

logger = logging.getLogger(__name__)


def finish(
    conn: Connection,
    task_id: str,
    *,
    status: str,
    log_id: int | None = None,
    execute_id: str | None = None,
    result_payload: dict[str, Any] | None = None,
    error_payload: dict[str, Any] | None = None,
    cache_hit: bool = False,
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
        record_task_end(conn, row, cache_hit=cache_hit)
        _log_end(conn, row, cache_hit=cache_hit)
    return row


def cancel(conn: Connection, task_id: str, token_id: str) -> RowMapping | None:
    row = repository.cancel_task(conn, task_id, token_id)
    if row is not None:
        enqueue_for_task(conn, row, callback_body(row))
        record_task_end(conn, row)
        _log_end(conn, row)
    return row


def _log_end(conn: Connection, row: RowMapping, *, cache_hit: bool = False) -> None:
    """``task.transition`` once the transaction commits (fields picked from the row: never
    its callback headers or payloads)."""
    error = row["error_payload"]
    log_after_commit(
        conn,
        logger,
        "task.transition",
        taskId=row["id"],
        ability=row["ability_id"],
        status=row["status"],
        tokenId=row["token_id"],
        requestId=row["request_id"],
        durationMs=row["duration_ms"],
        logId=row["log_id"],
        errorCode=error.get("code") if isinstance(error, dict) else None,
        cacheHit=cache_hit or None,
    )
