"""Every query on the jobs table but the claim and enqueue: heartbeat, fenced finish, sweep,
and the database-wide counts a metrics scrape reads (``active_counts``).

All due-time and lease comparisons use the database clock (``db_now_ms``), so
nodes with skewed clocks agree. Writes are sync functions for ``Database.run_write``.
The claim statement, with its per-kind policies, is in ``claim.py``; creating a job, in
``queue.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    Text,
    and_,
    bindparam,
    case,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import jobs

ACTIVE_STATES = ("queued", "running")


@dataclass(frozen=True, slots=True)
class Lease:
    """A claimed job: what a step needs, and the token that proves the claim."""

    id: int
    kind: str
    task_id: str | None
    payload: dict[str, Any]
    token: str
    steps: int
    crash_count: int
    # The clock when the lease was taken (the database's; a test's own when it gives one):
    # what the step measures its task's deadline against.
    now_ms: int


_HEARTBEAT = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_id"),
        jobs.c.lease_token == bindparam("b_token"),
        jobs.c.state == "running",
    )
    .values(lease_expires_at=db_now_ms() + bindparam("b_ttl"), updated_at=db_now_ms())
)


def heartbeat(conn: Connection, job_id: int, token: str, ttl_ms: int) -> bool:
    """Extend a lease; False when it is no longer ours (lost, or the job was canceled)."""
    result = conn.execute(_HEARTBEAT, {"b_id": job_id, "b_token": token, "b_ttl": ttl_ms})
    return bool(result.rowcount)


_LEASE_HELD = (
    jobs.c.id == bindparam("b_id"),
    jobs.c.lease_token == bindparam("b_token"),
    jobs.c.state == "running",
)
_RELEASE = {
    "lease_owner": None,
    "lease_token": None,
    "lease_expires_at": None,
    "updated_at": db_now_ms(),
    # The previous error stays visible unless there is a new one.
    "last_error": func.coalesce(bindparam("b_error", type_=Text), jobs.c.last_error),
    "crash_count": jobs.c.crash_count + bindparam("b_crashed", type_=Integer),
}
_END = update(jobs).where(*_LEASE_HELD).values(state=bindparam("b_state"), **_RELEASE)
_REQUEUE = (
    update(jobs)
    .where(*_LEASE_HELD)
    .values(
        state="queued",
        next_run_at=db_now_ms() + bindparam("b_delay", type_=BigInteger),
        payload=func.coalesce(
            bindparam("b_payload", type_=JSON(none_as_null=True)), jobs.c.payload
        ),
        **_RELEASE,
    )
)


def finish(
    conn: Connection,
    job_id: int,
    token: str,
    *,
    state: str,
    payload: dict[str, Any] | None = None,
    delay_ms: int = 0,
    error: str | None = None,
    crashed: bool = False,
) -> bool:
    """End a step, only if the lease is still ours (fencing). ``state`` "queued" reschedules
    the job ``delay_ms`` from now; "done", "failed" or "canceled" end it. ``crashed`` counts
    the step as a crash (an unexpected error in the step)."""
    params: dict[str, Any] = {
        "b_id": job_id,
        "b_token": token,
        "b_error": error,
        "b_crashed": 1 if crashed else 0,
    }
    if state == "queued":
        statement = _REQUEUE
        params.update(b_delay=delay_ms, b_payload=payload)
    else:
        statement = _END
        params["b_state"] = state
    return bool(conn.execute(statement, params).rowcount)


def release(conn: Connection, job_id: int, token: str) -> bool:
    """Give a lease back on a graceful stop: due again at once, not counted as a crash."""
    result = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.lease_token == token, jobs.c.state == "running")
        .values(
            state="queued",
            lease_owner=None,
            lease_token=None,
            lease_expires_at=None,
            next_run_at=db_now_ms(),
            updated_at=db_now_ms(),
        )
    )
    return bool(result.rowcount)


def lock_for_task(conn: Connection, task_id: str) -> None:
    """Lock a task's jobs first (PostgreSQL): every path locks jobs before the task row,
    so a runner finishing a step and a cancel or a notice cannot deadlock."""
    conn.execute(select(jobs.c.id).where(jobs.c.task_id == task_id).with_for_update())


def end_for_task(conn: Connection, task_id: str, state: str, kind: str | None = None) -> int:
    """End a task's active jobs whoever holds them (cancel, an inbound completion notice).

    A runner still working on one finds its lease gone at its next heartbeat or
    fenced finish, and drops what it was doing.
    """
    result = conn.execute(
        update(jobs)
        .where(jobs.c.task_id == task_id, jobs.c.state.in_(ACTIVE_STATES))
        .where(jobs.c.kind == kind if kind is not None else jobs.c.kind.is_not(None))
        .values(
            state=state,
            lease_owner=None,
            lease_token=None,
            lease_expires_at=None,
            updated_at=db_now_ms(),
        )
    )
    return int(result.rowcount)


@dataclass(frozen=True, slots=True)
class ExpiredJob:
    """A running job whose lease ran out, as the sweeper sees it."""

    id: int
    kind: str
    task_id: str | None
    payload: dict[str, Any]
    crash_count: int
    lease_owner: str | None


def expired(conn: Connection, limit: int) -> list[ExpiredJob]:
    """Running jobs whose lease ran out: their runner died (or stalled past its lease)."""
    rows = conn.execute(
        select(
            jobs.c.id,
            jobs.c.kind,
            jobs.c.task_id,
            jobs.c.payload,
            jobs.c.crash_count,
            jobs.c.lease_owner,
        )
        .where(jobs.c.state == "running", jobs.c.lease_expires_at < db_now_ms())
        .order_by(jobs.c.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [
        ExpiredJob(id, kind, task_id, payload or {}, crash_count, owner)
        for id, kind, task_id, payload, crash_count, owner in rows
    ]


def requeue_crashed(conn: Connection, job_id: int, owner: str | None) -> bool:
    result = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == "running", jobs.c.lease_owner == owner)
        .where(jobs.c.lease_expires_at < db_now_ms())
        .values(
            state="queued",
            lease_owner=None,
            lease_token=None,
            lease_expires_at=None,
            next_run_at=db_now_ms(),
            crash_count=jobs.c.crash_count + 1,
            last_error=f"runner {owner} lost its lease (crashed or stalled)",
            updated_at=db_now_ms(),
        )
    )
    return bool(result.rowcount)


def fail_crashed(conn: Connection, job_id: int, owner: str | None, reason: str) -> bool:
    result = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == "running", jobs.c.lease_owner == owner)
        .where(jobs.c.lease_expires_at < db_now_ms())
        .values(
            state="failed",
            lease_owner=None,
            lease_token=None,
            lease_expires_at=None,
            crash_count=jobs.c.crash_count + 1,
            last_error=reason,
            updated_at=db_now_ms(),
        )
    )
    return bool(result.rowcount)


def next_due_in_ms(conn: Connection) -> int | None:
    """How long until the next queued job is due (None: nothing queued)."""
    value = conn.execute(
        select(jobs.c.next_run_at - db_now_ms())
        .where(jobs.c.state == "queued")
        .order_by(jobs.c.next_run_at)
        .limit(1)
    ).scalar()
    return None if value is None else int(value)


def has_unfinished(conn: Connection, kind: str) -> bool:
    """Whether a job of ``kind`` is queued or running (for singleton jobs)."""
    found = conn.execute(
        select(jobs.c.id).where(jobs.c.kind == kind, jobs.c.state.in_(("queued", "running")))
    ).first()
    return found is not None


@dataclass(frozen=True, slots=True)
class KindCounts:
    """One job kind's active jobs on every node together."""

    kind: str
    running: int  # steps in flight (leased)
    queued: int  # waiting, due now or later
    due: int  # waiting and due: the backlog
    oldest_due_ms: int  # how long the oldest due job has waited (0: none is due)


async def active_counts(conn: AsyncConnection) -> list[KindCounts]:
    """Running and queued jobs per kind, in one statement over the active jobs only (the
    state index): what a metrics scrape reports, once for the whole database."""
    now = db_now_ms()
    due = and_(jobs.c.state == "queued", jobs.c.next_run_at <= now)
    rows = (
        await conn.execute(
            select(
                jobs.c.kind,
                func.sum(case((jobs.c.state == "running", 1), else_=0)),
                func.sum(case((jobs.c.state == "queued", 1), else_=0)),
                func.sum(case((due, 1), else_=0)),
                func.max(case((due, now - jobs.c.next_run_at), else_=0)),
            )
            .where(jobs.c.state.in_(ACTIVE_STATES))
            .group_by(jobs.c.kind)
        )
    ).all()
    return [
        KindCounts(kind, int(running or 0), int(queued or 0), int(waiting or 0), int(oldest or 0))
        for kind, running, queued, waiting, oldest in rows
    ]
