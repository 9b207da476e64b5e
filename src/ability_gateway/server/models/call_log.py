"""Upstream call logs: one row per HTTP call to Coze; its integer id is the public `logId`."""

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String, Table, Text

from ability_gateway.server.models.base import metadata

call_logs = Table(
    "call_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(40), nullable=True),
    Column("executor_id", String(100), nullable=False),
    # The gateway node (runner id) that made the call.
    Column("node", String(100), nullable=True),
    Column("workflow_id", String(40), nullable=False),
    Column("operation", String(40), nullable=False),
    Column("request_body", JSON, nullable=True),
    Column("http_status", Integer, nullable=True),
    Column("coze_code", BigInteger, nullable=True),
    Column("coze_message", Text, nullable=True),
    Column("coze_logid", String(64), nullable=True),
    Column("execute_id", String(64), nullable=True),
    Column("debug_url", Text, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Integer, nullable=False),
    # 1 for the first try of a call, 2 for its first retry, …
    Column("attempt", Integer, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_call_logs_task_id", "task_id"),
    Index("ix_call_logs_created_at", "created_at"),
)
