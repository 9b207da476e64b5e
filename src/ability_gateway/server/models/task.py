"""Tasks: one public invocation of an ability, from acceptance to a terminal state.

queued ──▶ running ──▶ succeeded | failed | timeout
   │          │
   └──────────┴──▶ canceled
"""

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from ability_gateway.server.models.base import metadata

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("token_id", String(32), ForeignKey("tokens.id"), nullable=False),
    Column("ability_id", String(100), nullable=False),
    Column("executor_id", String(100), nullable=True),
    Column("status", String(16), nullable=False),
    Column("request_id", String(128), nullable=False),
    # The id of the last upstream call log (the public `logId`).
    Column("log_id", Integer, nullable=True),
    Column("execute_id", String(64), nullable=True),
    Column("inputs", JSON, nullable=False),
    Column("client_metadata", JSON, nullable=True),
    Column("callback_url", Text, nullable=True),
    Column("callback_headers", JSON, nullable=True),
    Column("result_payload", JSON, nullable=True),
    Column("error_payload", JSON, nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    # When the task times out (acceptance + the ability's timeoutSeconds), database clock.
    Column("deadline_at", BigInteger, nullable=True),
    # The id of the generation job a workflow started elsewhere (external-job abilities).
    Column("external_id", String(128), nullable=True, unique=True),
    # The W3C trace context the task's later work joins (its steps, its callback): tracing/.
    Column("traceparent", String(55), nullable=True),
    Index("ix_tasks_token_id_created_at", "token_id", "created_at"),
    # The admin's list of every token's tasks, newest first; retention of finished ones.
    Index("ix_tasks_created_at", "created_at"),
    Index("ix_tasks_finished_at", "finished_at"),
)
