"""Every query on tasks and upstream call logs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import call_logs, tasks
from ability_gateway.server.providers.coze.client import CozeCall
from ability_gateway.server.tasks.schemas import TERMINAL_STATUSES


async def insert_task(conn: AsyncConnection, values: dict[str, Any]) -> None:
    now = db_now_ms()
    await conn.execute(insert(tasks).values(created_at=now, updated_at=now, **values))


async def insert_call_logs(
    conn: AsyncConnection, task_id: str, executor_id: str, calls: list[CozeCall]
) -> int | None:
    """Record each call; the id of the last one (the task's ``logId``)."""
    last_id: int | None = None
    for call in calls:
        result = await conn.execute(
            insert(call_logs)
            .values(
                task_id=task_id,
                executor_id=executor_id,
                workflow_id=call.workflow_id,
                operation=call.operation,
                request_body=call.request_body,
                http_status=call.http_status,
                coze_code=call.code,
                coze_message=call.message,
                coze_logid=call.logid,
                execute_id=call.execute_id,
                debug_url=call.debug_url,
                response_body=call.response_text,
                error=call.error,
                duration_ms=call.duration_ms,
                created_at=db_now_ms(),
            )
            .returning(call_logs.c.id)
        )
        last_id = int(result.scalar_one())
    return last_id


async def finish_task(conn: AsyncConnection, task_id: str, values: dict[str, Any]) -> bool:
    """Move a task to a terminal state, unless it already is in one (then nothing changes)."""
    now = db_now_ms()
    result = await conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.status.not_in(TERMINAL_STATUSES))
        .values(updated_at=now, finished_at=now, **values)
    )
    return bool(result.rowcount)


async def get_task(conn: AsyncConnection, task_id: str, token_id: str) -> RowMapping | None:
    query = select(
        tasks.c.id,
        tasks.c.ability_id,
        tasks.c.status,
        tasks.c.request_id,
        tasks.c.log_id,
        tasks.c.created_at,
        tasks.c.updated_at,
        tasks.c.result_payload,
        tasks.c.error_payload,
    ).where(tasks.c.id == task_id, tasks.c.token_id == token_id)
    return (await conn.execute(query)).mappings().first()
