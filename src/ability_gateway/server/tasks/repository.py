"""Every query on tasks and upstream call logs.

Writes are synchronous functions of a Connection, run by :meth:`Database.run_write`;
their statements are built once so SQLAlchemy's compiled cache serves every call.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.db import db_now_ms, storable_text
from ability_gateway.server.models import call_logs, deliveries, result_cache, tasks
from ability_gateway.server.providers.coze.client import CozeCall
from ability_gateway.server.tasks.schemas import TERMINAL_STATUSES

_INSERT_TASK = insert(tasks).values(
    created_at=db_now_ms(),
    updated_at=db_now_ms(),
    deadline_at=db_now_ms() + bindparam("b_timeout_ms"),
)
_INSERT_CALL_LOG = insert(call_logs).values(created_at=db_now_ms()).returning(call_logs.c.id)
_FINISH_TASK = (
    update(tasks)
    .where(tasks.c.id == bindparam("b_task_id"), tasks.c.status.not_in(TERMINAL_STATUSES))
    .values(
        updated_at=db_now_ms(),
        finished_at=db_now_ms(),
        duration_ms=db_now_ms() - tasks.c.created_at,
        log_id=func.coalesce(bindparam("b_log_id"), tasks.c.log_id),
        execute_id=func.coalesce(bindparam("b_execute_id"), tasks.c.execute_id),
    )
)
# What a finished task looks like to the caller (the invoke response is built from it).
RESULT_COLUMNS = (
    tasks.c.id,
    tasks.c.ability_id,
    tasks.c.status,
    tasks.c.request_id,
    tasks.c.log_id,
    tasks.c.duration_ms,
    tasks.c.client_metadata,
    tasks.c.result_payload,
    tasks.c.error_payload,
    tasks.c.token_id,
    tasks.c.callback_url,
    tasks.c.callback_headers,
)
_FINISH_TASK_RETURNING = _FINISH_TASK.returning(*RESULT_COLUMNS)
# A task as its owner sees it, with the state of its callback delivery.
_VIEW = select(
    *RESULT_COLUMNS,
    tasks.c.created_at,
    tasks.c.updated_at,
    deliveries.c.id.label("delivery_id"),
    deliveries.c.state.label("delivery_state"),
    deliveries.c.attempts.label("delivery_attempts"),
).select_from(tasks.outerjoin(deliveries, deliveries.c.task_id == tasks.c.id))


def insert_task(conn: Connection, values: dict[str, Any], timeout_ms: int) -> None:
    conn.execute(_INSERT_TASK, {**values, "b_timeout_ms": timeout_ms})


async def list_tasks(
    conn: AsyncConnection,
    token_id: str,
    *,
    status: str | None,
    ability_id: str | None,
    cursor: str | None,
    limit: int,
) -> list[RowMapping]:
    """A token's tasks, newest first (ids sort by creation time), after ``cursor``."""
    query = _VIEW.where(tasks.c.token_id == token_id)
    if status:
        query = query.where(tasks.c.status == status)
    if ability_id:
        query = query.where(tasks.c.ability_id == ability_id)
    if cursor:
        query = query.where(tasks.c.id < cursor)
    result = await conn.execute(query.order_by(tasks.c.id.desc()).limit(limit))
    return list(result.mappings().all())


def insert_call_logs(
    conn: Connection, task_id: str, executor_id: str, calls: list[CozeCall], node: str | None = None
) -> int | None:
    """Record each call; the id of the last one (the task's ``logId``)."""
    last_id: int | None = None
    for call in calls:
        result = conn.execute(
            _INSERT_CALL_LOG,
            {
                "task_id": task_id,
                "executor_id": call.executor_id or executor_id,
                "node": node,
                "workflow_id": call.workflow_id,
                "operation": call.operation,
                "request_body": call.request_body,
                "http_status": call.http_status,
                "coze_code": call.code,
                "coze_message": storable_text(call.message),
                "coze_logid": storable_text(call.logid),
                "execute_id": storable_text(call.execute_id),
                "debug_url": storable_text(call.debug_url),
                "response_body": storable_text(call.response_text),
                "error": storable_text(call.error),
                "duration_ms": call.duration_ms,
                "attempt": call.attempt,
            },
        )
        last_id = int(result.scalar_one())
    return last_id


def finish_task(
    conn: Connection,
    task_id: str,
    *,
    status: str,
    log_id: int | None = None,
    execute_id: str | None = None,
    result_payload: dict[str, Any] | None = None,
    error_payload: dict[str, Any] | None = None,
) -> RowMapping | None:
    """Move a task to a terminal state, unless it already is in one (then nothing changes
    and None is returned). ``log_id`` / ``execute_id`` keep their old values when None."""
    result = conn.execute(
        _FINISH_TASK_RETURNING,
        {
            "b_task_id": task_id,
            "b_log_id": log_id,
            "b_execute_id": storable_text(execute_id),
            "status": status,
            "result_payload": result_payload,
            "error_payload": error_payload,
        },
    )
    return result.mappings().first()


_UPDATE_PROGRESS = (
    update(tasks)
    .where(tasks.c.id == bindparam("b_task_id"), tasks.c.status.not_in(TERMINAL_STATUSES))
    .values(
        status="running",
        updated_at=db_now_ms(),
        log_id=func.coalesce(bindparam("b_log_id"), tasks.c.log_id),
        execute_id=func.coalesce(bindparam("b_execute_id"), tasks.c.execute_id),
        external_id=func.coalesce(bindparam("b_external_id"), tasks.c.external_id),
    )
)


def mark_running(
    conn: Connection,
    task_id: str,
    *,
    log_id: int | None = None,
    execute_id: str | None = None,
    external_id: str | None = None,
) -> bool:
    """The task is being worked on; record what is known so far (None keeps the old value)."""
    result = conn.execute(
        _UPDATE_PROGRESS,
        {
            "b_task_id": task_id,
            "b_log_id": log_id,
            "b_execute_id": storable_text(execute_id),
            "b_external_id": storable_text(external_id),
        },
    )
    return bool(result.rowcount)


def cancel_task(conn: Connection, task_id: str, token_id: str) -> RowMapping | None:
    """Cancel a queued or running task of this token; None if it is not (then look why)."""
    result = conn.execute(
        update(tasks)
        .where(
            tasks.c.id == task_id,
            tasks.c.token_id == token_id,
            tasks.c.status.not_in(TERMINAL_STATUSES),
        )
        .values(
            status="canceled",
            updated_at=db_now_ms(),
            finished_at=db_now_ms(),
            duration_ms=db_now_ms() - tasks.c.created_at,
            error_payload={"code": 499, "message": "The task was canceled"},
        )
        .returning(*RESULT_COLUMNS)
    )
    return result.mappings().first()


_STEP_TASK = select(
    tasks.c.id,
    tasks.c.ability_id,
    tasks.c.executor_id,
    tasks.c.status,
    tasks.c.request_id,
    tasks.c.inputs,
    tasks.c.client_metadata,
    tasks.c.external_id,
    tasks.c.token_id,
    tasks.c.deadline_at,
    tasks.c.traceparent,
).where(tasks.c.id == bindparam("task_id"))


async def load_for_step(conn: AsyncConnection, task_id: str) -> RowMapping | None:
    return (await conn.execute(_STEP_TASK, {"task_id": task_id})).mappings().first()


def find_by_external_id(conn: Connection, external_id: str) -> RowMapping | None:
    return (
        conn.execute(
            select(
                tasks.c.id,
                tasks.c.ability_id,
                tasks.c.executor_id,
                tasks.c.status,
                tasks.c.request_id,
                tasks.c.inputs,
                tasks.c.client_metadata,
                tasks.c.external_id,
                tasks.c.execute_id,
            ).where(tasks.c.external_id == external_id)
        )
        .mappings()
        .first()
    )


_GET_TASK = _VIEW.where(
    tasks.c.id == bindparam("task_id"), tasks.c.token_id == bindparam("token_id")
)


async def count_active(conn: AsyncConnection, token_id: str) -> int:
    """The token's tasks not finished yet."""
    result = await conn.execute(
        select(func.count())
        .select_from(tasks)
        .where(tasks.c.token_id == token_id, tasks.c.status.in_(("queued", "running")))
    )
    return int(result.scalar_one())


async def get_task(conn: AsyncConnection, task_id: str, token_id: str) -> RowMapping | None:
    result = await conn.execute(_GET_TASK, {"task_id": task_id, "token_id": token_id})
    return result.mappings().first()


async def waiting_on(conn: AsyncConnection, external_id: str) -> tuple[str, str, str] | None:
    """The task waiting on an external generation job: (id, token id, status)."""
    row = (
        await conn.execute(
            select(tasks.c.id, tasks.c.token_id, tasks.c.status).where(
                tasks.c.external_id == external_id
            )
        )
    ).first()
    return None if row is None else (str(row.id), str(row.token_id), str(row.status))


# --- the result cache -------------------------------------------------------------------


async def find_cached(conn: AsyncConnection, key: str) -> tuple[dict[str, Any], str | None] | None:
    """A cached result not yet expired, and the token of the task that made it."""
    row = (
        await conn.execute(
            select(result_cache.c.result_payload, tasks.c.token_id)
            .select_from(result_cache.outerjoin(tasks, tasks.c.id == result_cache.c.source_task_id))
            .where(result_cache.c.key == key, result_cache.c.expires_at > db_now_ms())
        )
    ).first()
    return None if row is None else (dict(row[0]), row[1])


def store_cached(
    conn: Connection, key: str, ability_id: str, payload: dict[str, Any], task_id: str, ttl_ms: int
) -> None:
    conn.execute(delete(result_cache).where(result_cache.c.key == key))
    try:
        with conn.begin_nested():  # another task may store the same key at the same moment
            conn.execute(
                insert(result_cache).values(
                    key=key,
                    ability_id=ability_id,
                    result_payload=payload,
                    source_task_id=task_id,
                    created_at=db_now_ms(),
                    expires_at=db_now_ms() + ttl_ms,
                )
            )
    except IntegrityError:
        pass  # theirs is as good as ours


def insert_cache_hit_log(
    conn: Connection, task_id: str, executor_id: str, workflow_id: str, node: str
) -> int:
    """The call log row of a hit: no upstream call was made, and the log says so."""
    result = conn.execute(
        insert(call_logs)
        .values(
            task_id=task_id,
            executor_id=executor_id,
            node=node,
            workflow_id=workflow_id,
            operation="cache.hit",
            duration_ms=0,
            created_at=db_now_ms(),
        )
        .returning(call_logs.c.id)
    )
    return int(result.scalar_one())
