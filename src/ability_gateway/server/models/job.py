"""Jobs: internal units of background work (a task's steps, callback deliveries, retention).

    queued ──claim──▶ running ──finish──▶ done | failed | canceled
      ▲                 │
      └──reschedule─────┘   (a long wait is a short step that sets next_run_at)
      └──sweeper────────┘   (lease expired: the runner died; crash_count + 1, failed at 3)

``concurrency_key`` (set at enqueue: a task job's executor, a delivery's token) lets a kind's
claim policy cap how many jobs of that kind with the same key run at once, on every node
together.

A running job is leased: ``lease_owner`` / ``lease_token`` / ``lease_expires_at``
(renewed by a heartbeat). Every write that ends a step checks the token (fencing):
a runner that lost its lease changes nothing.
"""

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String, Table, Text

from ability_gateway.server.models.base import metadata

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(40), nullable=False),
    Column("task_id", String(40), nullable=True),
    Column("state", String(16), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("next_run_at", BigInteger, nullable=False),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_token", String(40), nullable=True),
    Column("lease_expires_at", BigInteger, nullable=True),
    # When the current lease was taken (not moved by heartbeats): the order of running jobs.
    Column("claimed_at", BigInteger, nullable=True),
    Column("concurrency_key", String(64), nullable=True),
    Column("steps", Integer, nullable=False, server_default="0"),
    Column("crash_count", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_jobs_state_next_run_at", "state", "next_run_at"),
    Index("ix_jobs_state_lease_expires_at", "state", "lease_expires_at"),
    Index("ix_jobs_task_id", "task_id"),
    Index("ix_jobs_state_kind_concurrency_key", "state", "kind", "concurrency_key"),
)
