"""Every query on tasks and upstream call logs.

Writes are synchronous functions of a Connection, run by :meth:`Database.run_write`;
their statements are built once so SQLAlchemy's compiled cache serves every call.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import call_logs, tasks
from ability_gateway.server.providers.coze.client import CozeCall
from ability_gateway.server.tasks.schemas import TERMINAL_STATUSES

_INSERT_TASK = insert(tasks).values(created_at=db_now_ms(), updated_at=db_now_ms())
_INSERT_CALL_LOG = insert(call_logs).values(created_at=db_now_ms()).returning(call_logs.c.id)
_FINISH_TASK = (
    update(tasks)
    .where(tasks.c.id == bindparam("b_task_id"), tasks.c.status.not_in(TERMINAL_STATUSES))
    .values(updated_at=db_now_ms(), finished_at=db_now_ms())
)


def insert_task(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(_INSERT_TASK, values)


def insert_call_logs(
    conn: Connection, task_id: str, executor_id: str, calls: list[CozeCall]
) -> int | None:
    """Record each call; the id of the last one (the task's ``logId``)."""
    last_id: int | None = None
    for call in calls:
        result = conn.execute(
            _INSERT_CALL_LOG,
            {
                "task_id": task_id,
                "executor_id": executor_id,
                "workflow_id": call.workflow_id,
                "operation": call.operation,
                "request_body": call.request_body,
                "http_status": call.http_status,
                "coze_code": call.code,
                "coze_message": call.message,
                "coze_logid": call.logid,
                "execute_id": call.execute_id,
                "debug_url": call.debug_url,
                "response_body": call.response_text,
                "error": call.error,
                "duration_ms": call.duration_ms,
            },
        )
        last_id = int(result.scalar_one())
    return last_id


def finish_task(conn: Connection, task_id: str, values: dict[str, Any]) -> bool:
    """Move a task to a terminal state, unless it already is in one (then nothing changes)."""
    result = conn.execute(_FINISH_TASK, {"b_task_id": task_id, **values})
    return bool(result.rowcount)


_GET_TASK = select(
    tasks.c.id,
    tasks.c.ability_id,
    tasks.c.status,
    tasks.c.request_id,
    tasks.c.log_id,
    tasks.c.created_at,
    tasks.c.updated_at,
    tasks.c.result_payload,
    tasks.c.error_payload,
).where(tasks.c.id == bindparam("task_id"), tasks.c.token_id == bindparam("token_id"))


async def get_task(conn: AsyncConnection, task_id: str, token_id: str) -> RowMapping | None:
    result = await conn.execute(_GET_TASK, {"task_id": task_id, "token_id": token_id})
    return result.mappings().first()
