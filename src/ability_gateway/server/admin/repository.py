"""The admin's queries across every token: tasks with their whole story, call logs, the
callback dead-letter, recent outcomes per executor. Read-only (redelivery writes through
``callbacks/``). Lists page by descending id (ids grow with time), ``limit`` + 1 rows so the
service can tell whether there is a next page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, or_, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import (
    call_logs,
    deliveries,
    delivery_attempts,
    media,
    task_media,
    tasks,
)


@dataclass(frozen=True, slots=True)
class TaskFilter:
    token_id: str | None = None
    ability_id: str | None = None
    status: str | None = None
    executor_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    search: str | None = None  # a task id, request id, external job id or Coze execute id


_TASK_ROW = select(
    tasks.c.id,
    tasks.c.token_id,
    tasks.c.ability_id,
    tasks.c.executor_id,
    tasks.c.status,
    tasks.c.request_id,
    tasks.c.log_id,
    tasks.c.execute_id,
    tasks.c.external_id,
    tasks.c.duration_ms,
    tasks.c.error_payload,
    tasks.c.created_at,
    tasks.c.updated_at,
    tasks.c.finished_at,
    deliveries.c.state.label("delivery_state"),
).select_from(tasks.outerjoin(deliveries, deliveries.c.task_id == tasks.c.id))


async def list_tasks(
    conn: AsyncConnection, where: TaskFilter, after: str | None, limit: int
) -> list[RowMapping]:
    query = _TASK_ROW
    if where.token_id:
        query = query.where(tasks.c.token_id == where.token_id)
    if where.ability_id:
        query = query.where(tasks.c.ability_id == where.ability_id)
    if where.status:
        query = query.where(tasks.c.status == where.status)
    if where.executor_id:
        query = query.where(tasks.c.executor_id == where.executor_id)
    if where.since_ms is not None:
        query = query.where(tasks.c.created_at >= where.since_ms)
    if where.until_ms is not None:
        query = query.where(tasks.c.created_at < where.until_ms)
    if where.search:
        text = where.search
        query = query.where(
            or_(
                tasks.c.id == text,
                tasks.c.request_id == text,
                tasks.c.external_id == text,
                tasks.c.execute_id == text,
            )
        )
    if after:
        query = query.where(tasks.c.id < after)
    query = query.order_by(tasks.c.id.desc()).limit(limit)
    return list((await conn.execute(query)).mappings().all())


async def get_task(conn: AsyncConnection, task_id: str) -> RowMapping | None:
    query = select(tasks, db_now_ms().label("now")).where(tasks.c.id == task_id)
    return (await conn.execute(query)).mappings().first()


async def call_logs_of(conn: AsyncConnection, task_id: str) -> list[RowMapping]:
    query = select(call_logs).where(call_logs.c.task_id == task_id).order_by(call_logs.c.id)
    return list((await conn.execute(query)).mappings().all())


async def delivery_of(
    conn: AsyncConnection, task_id: str
) -> tuple[RowMapping | None, list[RowMapping]]:
    delivery = (
        (await conn.execute(select(deliveries).where(deliveries.c.task_id == task_id)))
        .mappings()
        .first()
    )
    if delivery is None:
        return None, []
    attempts = await conn.execute(
        select(delivery_attempts)
        .where(delivery_attempts.c.delivery_id == delivery["id"])
        .order_by(delivery_attempts.c.id)
    )
    return delivery, list(attempts.mappings().all())


async def media_of(conn: AsyncConnection, task_id: str) -> list[RowMapping]:
    query = (
        select(
            task_media.c.role,
            task_media.c.created_at.label("linked_at"),
            media.c.key,
            media.c.content_type,
            media.c.size,
            media.c.source_url,
        )
        .select_from(task_media.join(media, media.c.key == task_media.c.media_key))
        .where(task_media.c.task_id == task_id)
        .order_by(task_media.c.created_at, media.c.key)
    )
    return list((await conn.execute(query)).mappings().all())


# --- call logs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallLogFilter:
    task_id: str | None = None
    executor_id: str | None = None
    operation: str | None = None
    coze_code: int | None = None
    failed_only: bool = False
    since_ms: int | None = None
    until_ms: int | None = None


_LOG_SUMMARY = (
    call_logs.c.id,
    call_logs.c.task_id,
    call_logs.c.executor_id,
    call_logs.c.node,
    call_logs.c.workflow_id,
    call_logs.c.operation,
    call_logs.c.http_status,
    call_logs.c.coze_code,
    call_logs.c.coze_message,
    call_logs.c.coze_logid,
    call_logs.c.execute_id,
    call_logs.c.debug_url,
    call_logs.c.error,
    call_logs.c.duration_ms,
    call_logs.c.attempt,
    call_logs.c.created_at,
)


async def get_call_log(conn: AsyncConnection, log_id: int) -> RowMapping | None:
    query = (
        select(call_logs, tasks.c.token_id, tasks.c.ability_id, tasks.c.request_id)
        .select_from(call_logs.outerjoin(tasks, tasks.c.id == call_logs.c.task_id))
        .where(call_logs.c.id == log_id)
    )
    return (await conn.execute(query)).mappings().first()


async def list_call_logs(
    conn: AsyncConnection, where: CallLogFilter, after: int | None, limit: int
) -> list[RowMapping]:
    query: Select[tuple[object, ...]] = select(*_LOG_SUMMARY)
    if where.task_id:
        query = query.where(call_logs.c.task_id == where.task_id)
    if where.executor_id:
        query = query.where(call_logs.c.executor_id == where.executor_id)
    if where.operation:
        query = query.where(call_logs.c.operation == where.operation)
    if where.coze_code is not None:
        query = query.where(call_logs.c.coze_code == where.coze_code)
    if where.failed_only:
        query = query.where(or_(call_logs.c.coze_code.is_(None), call_logs.c.coze_code != 0))
    if where.since_ms is not None:
        query = query.where(call_logs.c.created_at >= where.since_ms)
    if where.until_ms is not None:
        query = query.where(call_logs.c.created_at < where.until_ms)
    if after is not None:
        query = query.where(call_logs.c.id < after)
    query = query.order_by(call_logs.c.id.desc()).limit(limit)
    return list((await conn.execute(query)).mappings().all())


# --- callbacks --------------------------------------------------------------------------


async def list_deliveries(
    conn: AsyncConnection,
    states: tuple[str, ...],
    token_id: str | None,
    after: str | None,
    limit: int,
) -> list[RowMapping]:
    query = select(
        deliveries.c.id,
        deliveries.c.task_id,
        deliveries.c.token_id,
        deliveries.c.url,
        deliveries.c.state,
        deliveries.c.attempts,
        deliveries.c.last_status,
        deliveries.c.last_error,
        deliveries.c.next_attempt_at,
        deliveries.c.delivered_at,
        deliveries.c.created_at,
        deliveries.c.updated_at,
    ).where(deliveries.c.state.in_(states))
    if token_id:
        query = query.where(deliveries.c.token_id == token_id)
    if after:
        query = query.where(deliveries.c.id < after)
    query = query.order_by(deliveries.c.id.desc()).limit(limit)
    return list((await conn.execute(query)).mappings().all())


# --- executors --------------------------------------------------------------------------


async def recent_calls(conn: AsyncConnection, window_ms: int) -> list[RowMapping]:
    """Each executor's calls in the window: (executor, Coze code, HTTP status, duration),
    the durations sorted, for counts per code and latency percentiles."""
    query = (
        select(
            call_logs.c.executor_id,
            call_logs.c.coze_code,
            call_logs.c.http_status,
            call_logs.c.duration_ms,
        )
        .where(call_logs.c.created_at >= db_now_ms() - window_ms)
        .where(call_logs.c.operation != "cache.hit")
        .order_by(call_logs.c.executor_id, call_logs.c.duration_ms)
    )
    return list((await conn.execute(query)).mappings().all())
