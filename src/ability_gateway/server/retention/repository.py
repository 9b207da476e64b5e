"""The queries of retention: finished tasks older than the cutoff and what hangs off them."""

from __future__ import annotations

from sqlalchemy import and_, delete, exists, select
from sqlalchemy.engine import Connection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import (
    call_logs,
    deliveries,
    delivery_attempts,
    idempotency_keys,
    jobs,
    quota_counters,
    task_media,
    tasks,
)

TERMINAL = ("succeeded", "failed", "canceled", "timeout")
ACTIVE_JOB_STATES = ("queued", "running")


def forget_old_tasks(conn: Connection, older_than_ms: int, limit: int) -> int:
    """Delete up to ``limit`` tasks that ended more than ``older_than_ms`` ago, with their
    call logs, callback delivery and attempts, media links, idempotency keys and ended jobs.
    A task whose callback is still pending, or with a job still active, is kept for now."""
    cutoff = db_now_ms() - older_than_ms
    pending = exists().where(deliveries.c.task_id == tasks.c.id, deliveries.c.state == "pending")
    active = exists().where(jobs.c.task_id == tasks.c.id, jobs.c.state.in_(ACTIVE_JOB_STATES))
    ids = list(
        conn.execute(
            select(tasks.c.id)
            .where(
                tasks.c.status.in_(TERMINAL),
                tasks.c.finished_at < cutoff,
                ~pending,
                ~active,
            )
            .order_by(tasks.c.finished_at)
            .limit(limit)
        ).scalars()
    )
    if not ids:
        return 0
    delivery_ids = select(deliveries.c.id).where(deliveries.c.task_id.in_(ids))
    conn.execute(delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(delivery_ids)))
    conn.execute(delete(deliveries).where(deliveries.c.task_id.in_(ids)))
    conn.execute(delete(call_logs).where(call_logs.c.task_id.in_(ids)))
    conn.execute(delete(task_media).where(task_media.c.task_id.in_(ids)))
    conn.execute(delete(idempotency_keys).where(idempotency_keys.c.task_id.in_(ids)))
    conn.execute(
        delete(jobs).where(and_(jobs.c.task_id.in_(ids), jobs.c.state.not_in(ACTIVE_JOB_STATES)))
    )
    conn.execute(delete(tasks).where(tasks.c.id.in_(ids)))
    return len(ids)


def forget_old_logs(conn: Connection, older_than_ms: int, limit: int) -> int:
    """Call logs of no task (or of a task gone already) older than the cutoff, in a batch."""
    cutoff = db_now_ms() - older_than_ms
    old = (
        select(call_logs.c.id)
        .where(
            call_logs.c.created_at < cutoff,
            ~exists().where(tasks.c.id == call_logs.c.task_id),
        )
        .order_by(call_logs.c.id)
        .limit(limit)
    )
    ids = list(conn.execute(old).scalars())
    if ids:
        conn.execute(delete(call_logs).where(call_logs.c.id.in_(ids)))
    return len(ids)


# A quota window is a local day (at most 25 hours with a DST change): two days after its
# start it is over everywhere, and its counter is read by nothing.
QUOTA_WINDOW_KEPT_MS = 2 * 86_400_000


def forget_old_quota_counters(conn: Connection) -> int:
    """Quota counters of windows that are over (a day's worth of rows per run at most: one
    per token with a quota and scope)."""
    cutoff = db_now_ms() - QUOTA_WINDOW_KEPT_MS
    gone = delete(quota_counters).where(quota_counters.c.window_start_ms < cutoff)
    return len(conn.execute(gone.returning(quota_counters.c.n)).all())
