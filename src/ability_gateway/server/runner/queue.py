"""Enqueue: the one way a job is created, in the caller's transaction.

A job is written queued (due after ``delay_ms``), or already leased to the caller (a request
handler that runs the first step itself). A leased job whose kind caps its key (``key_cap``)
is leased only while that key has fewer than ``key_cap`` running jobs of the kind, on every
node; else it is written queued and a runner's claim takes it in turn. On PostgreSQL that
count runs under the claim's advisory lock, so an enqueue and a claim never both see room
for the same last slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.engine import Connection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import jobs


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """Create the job already claimed by ``owner`` with ``token``, for ``ttl_ms``."""

    owner: str
    token: str
    ttl_ms: int
    # At most this many running jobs of the kind with the job's key (None: no cap).
    key_cap: int | None = None


@dataclass(frozen=True, slots=True)
class Enqueued:
    id: int
    # True: the caller holds the lease (it asked for one and there was room under the cap).
    leased: bool
    # The database clock when the lease was taken (None: not leased).
    leased_at_ms: int | None = None


# Serialises everything that counts running jobs per key, across nodes (PostgreSQL): b"agwclaim".
KEYED_LOCK = 0x616777636C61696D

_INSERT_QUEUED = (
    insert(jobs)
    .values(
        state="queued",
        next_run_at=db_now_ms() + bindparam("b_delay"),
        steps=0,
        crash_count=0,
        created_at=db_now_ms(),
        updated_at=db_now_ms(),
    )
    .returning(jobs.c.id)
)
_INSERT_LEASED = (
    insert(jobs)
    .values(
        state="running",
        next_run_at=db_now_ms(),
        lease_expires_at=db_now_ms() + bindparam("b_ttl"),
        claimed_at=db_now_ms(),
        steps=1,
        crash_count=0,
        created_at=db_now_ms(),
        updated_at=db_now_ms(),
    )
    .returning(jobs.c.id, jobs.c.claimed_at)
)
_RUNNING_WITH_KEY = select(func.count()).where(
    jobs.c.state == "running",
    jobs.c.kind == bindparam("b_kind"),
    jobs.c.concurrency_key == bindparam("b_key"),
)


def enqueue(
    conn: Connection,
    kind: str,
    *,
    task_id: str | None = None,
    payload: dict[str, Any] | None = None,
    delay_ms: int = 0,
    concurrency_key: str | None = None,
    lease: LeaseRequest | None = None,
) -> Enqueued:
    """Write a job of ``kind``. ``concurrency_key``: what the kind's claim policy counts it
    under (e.g. its token, its executor); ``lease``: take it at once (see the module doc)."""
    values: dict[str, Any] = {
        "kind": kind,
        "task_id": task_id,
        "payload": payload or {},
        "concurrency_key": concurrency_key,
    }
    if lease is not None and _room(conn, kind, concurrency_key, lease.key_cap):
        values.update(lease_owner=lease.owner, lease_token=lease.token, b_ttl=lease.ttl_ms)
        row = conn.execute(_INSERT_LEASED, values).one()
        return Enqueued(int(row.id), True, int(row.claimed_at))
    job_id = conn.execute(_INSERT_QUEUED, {**values, "b_delay": delay_ms}).scalar_one()
    return Enqueued(int(job_id), False)


def _room(conn: Connection, kind: str, key: str | None, cap: int | None) -> bool:
    if cap is None or key is None:
        return True
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(KEYED_LOCK)))
    running = conn.execute(_RUNNING_WITH_KEY, {"b_kind": kind, "b_key": key}).scalar_one()
    return int(running) < cap


def running_with_key(conn: Connection, kind: str, key: str) -> int:
    """Jobs of ``kind`` with this ``concurrency_key`` running now, on every node."""
    return int(conn.execute(_RUNNING_WITH_KEY, {"b_kind": kind, "b_key": key}).scalar_one())
