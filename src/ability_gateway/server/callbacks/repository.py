"""Every query on deliveries and their attempts (writes: sync functions for run_write)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    not_,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.ids import new_id
from ability_gateway.server.models import deliveries, delivery_attempts, tasks, tokens
from ability_gateway.server.runner.queue import enqueue

DELIVER_JOB = "callback.deliver"

_INSERT_DELIVERY = insert(deliveries).values(
    state="pending",
    attempts=0,
    next_attempt_at=db_now_ms(),
    created_at=db_now_ms(),
    updated_at=db_now_ms(),
)


def enqueue_for_task(conn: Connection, row: RowMapping, payload: dict[str, Any]) -> str | None:
    """Write the task's delivery of ``payload`` and its job (in the transaction that ends
    the task)."""
    url = row["callback_url"]
    if not url:
        return None
    delivery_id = new_id("msg")
    body = orjson.dumps(payload).decode()
    conn.execute(
        _INSERT_DELIVERY,
        {
            "id": delivery_id,
            "task_id": row["id"],
            "token_id": row["token_id"],
            "url": url,
            "headers": row["callback_headers"],
            "body": body,
        },
    )
    enqueue(
        conn,
        DELIVER_JOB,
        task_id=row["id"],
        payload={"deliveryId": delivery_id},
        concurrency_key=row["token_id"],  # the per-token cap of deliveries in flight
    )
    return delivery_id


_LOAD = (
    select(
        deliveries.c.id,
        deliveries.c.task_id,
        deliveries.c.url,
        deliveries.c.headers,
        deliveries.c.body,
        deliveries.c.state,
        deliveries.c.attempts,
        tokens.c.callback_secret,
        # During a secret rotation's overlap the old secret signs too.
        case(
            (tokens.c.previous_secret_expires_at > db_now_ms(), tokens.c.previous_callback_secret),
            else_=null(),
        ).label("previous_callback_secret"),
        # The task's trace, which its callback attempts join (tracing/).
        tasks.c.traceparent,
    )
    .join(tokens, tokens.c.id == deliveries.c.token_id)
    .outerjoin(tasks, tasks.c.id == deliveries.c.task_id)
    .where(deliveries.c.id == bindparam("delivery_id"))
)


async def load(conn: AsyncConnection, delivery_id: str) -> RowMapping | None:
    return (await conn.execute(_LOAD, {"delivery_id": delivery_id})).mappings().first()


_INSERT_ATTEMPT = insert(delivery_attempts).values(
    started_at=db_now_ms() - bindparam("b_duration"), duration_ms=bindparam("b_duration")
)


def record_attempt(
    conn: Connection,
    delivery_id: str,
    *,
    number: int,
    manual: bool,
    duration_ms: int,
    http_status: int | None,
    error: str | None,
    excerpt: str | None,
    node: str | None,
    state: str,
    delay_ms: int | None,
) -> None:
    """One attempt, and the delivery's state after it (``delay_ms``: when to try again)."""
    if manual:  # after whatever attempts were recorded meanwhile
        number = 1 + int(
            conn.execute(
                select(func.coalesce(func.max(delivery_attempts.c.number), 0)).where(
                    delivery_attempts.c.delivery_id == delivery_id
                )
            ).scalar_one()
        )
    conn.execute(
        _INSERT_ATTEMPT,
        {
            "delivery_id": delivery_id,
            "number": number,
            "manual": manual,
            "b_duration": duration_ms,
            "http_status": http_status,
            "error": error,
            "response_excerpt": excerpt,
            "node": node,
        },
    )
    values: dict[str, Any] = {
        "state": state,
        "last_status": http_status,
        "last_error": error,
        "updated_at": db_now_ms(),
    }
    if not manual:  # a manual attempt is outside the schedule: it changes neither
        values["attempts"] = deliveries.c.attempts + 1
        values["next_attempt_at"] = None if delay_ms is None else db_now_ms() + delay_ms
    if state == "delivered":
        values["delivered_at"] = db_now_ms()
    statement = update(deliveries).where(deliveries.c.id == delivery_id)
    if manual:
        # A manual attempt may only ever deliver: a scheduled attempt that finished
        # meanwhile must not be overwritten by the state read before this one was sent.
        if state != "delivered":
            values.pop("state")
        statement = statement.where(deliveries.c.state != "delivered")
    conn.execute(statement.values(**values))


MINUTE_MS = 60_000
_WINDOW_OPEN = and_(
    deliveries.c.redeliver_window_at.is_not(None),
    deliveries.c.redeliver_window_at > db_now_ms() - MINUTE_MS,
)
_START_REDELIVERY = (
    update(deliveries)
    .where(
        deliveries.c.id == bindparam("b_id"),
        # One in flight; a mark older than ``b_stale`` is left by a node that died mid-attempt.
        or_(
            deliveries.c.redeliver_started_at.is_(None),
            deliveries.c.redeliver_started_at < db_now_ms() - bindparam("b_stale"),
        ),
        or_(not_(_WINDOW_OPEN), deliveries.c.redeliver_count < bindparam("b_per_minute")),
    )
    .values(
        redeliver_started_at=db_now_ms(),
        redeliver_window_at=case(
            (_WINDOW_OPEN, deliveries.c.redeliver_window_at), else_=db_now_ms()
        ),
        redeliver_count=case((_WINDOW_OPEN, deliveries.c.redeliver_count + 1), else_=1),
    )
)


def start_redelivery(
    conn: Connection, delivery_id: str, *, per_minute: int, in_flight_ms: int, stale_ms: int
) -> tuple[int, bool]:
    """Take the delivery's one manual-redelivery place (every node sees it): (0, _) when
    taken; else (ms to wait, True when one is in flight / False when the minute is used up)."""
    params = {"b_id": delivery_id, "b_stale": stale_ms, "b_per_minute": per_minute}
    if conn.execute(_START_REDELIVERY, params).rowcount:
        return 0, False
    row = conn.execute(
        select(
            deliveries.c.redeliver_started_at,
            deliveries.c.redeliver_window_at,
            deliveries.c.redeliver_count,
            db_now_ms().label("now"),
        ).where(deliveries.c.id == delivery_id)
    ).one()
    waits = [1]
    busy = row.redeliver_started_at is not None and row.redeliver_started_at >= row.now - stale_ms
    if busy:
        waits.append(row.redeliver_started_at + in_flight_ms - row.now)
    window_open = (
        row.redeliver_window_at is not None and row.redeliver_window_at > row.now - MINUTE_MS
    )
    if window_open and row.redeliver_count >= per_minute:
        waits.append(row.redeliver_window_at + MINUTE_MS - row.now)
    return max(waits), busy


def end_redelivery(conn: Connection, delivery_id: str, *, keep_manual: int) -> None:
    """Free the manual-redelivery place; keep only the latest ``keep_manual`` manual attempts
    (every scheduled attempt stays)."""
    conn.execute(
        update(deliveries).where(deliveries.c.id == delivery_id).values(redeliver_started_at=None)
    )
    latest = (
        select(delivery_attempts.c.id)
        .where(
            delivery_attempts.c.delivery_id == delivery_id,
            delivery_attempts.c.manual.is_(True),
        )
        .order_by(delivery_attempts.c.id.desc())
        .limit(keep_manual)
    )
    conn.execute(
        delete(delivery_attempts).where(
            delivery_attempts.c.delivery_id == delivery_id,
            delivery_attempts.c.manual.is_(True),
            delivery_attempts.c.id.not_in(latest),
        )
    )


def give_up(conn: Connection, delivery_id: str, reason: str) -> None:
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.state == "pending")
        .values(state="exhausted", last_error=reason, next_attempt_at=None, updated_at=db_now_ms())
    )


async def for_task(
    conn: AsyncConnection, task_id: str
) -> tuple[RowMapping | None, list[RowMapping]]:
    delivery = (
        (await conn.execute(select(deliveries).where(deliveries.c.task_id == task_id)))
        .mappings()
        .first()
    )
    if delivery is None:
        return None, []
    attempts = (
        (
            await conn.execute(
                select(delivery_attempts)
                .where(delivery_attempts.c.delivery_id == delivery["id"])
                .order_by(delivery_attempts.c.id)
            )
        )
        .mappings()
        .all()
    )
    return delivery, list(attempts)
