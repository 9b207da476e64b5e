"""Callback deliveries (one per finished task with a callbackUrl) and their attempts.

    pending ──2xx (and code 0)──▶ delivered
       │ failure: retry after 10 s, 30 s, 1 min, 5 min, 10 min
       ├──6th failure──▶ exhausted
       └──HTTP 410─────▶ gone

A delivery's ``id`` is its ``webhook-id``: the same on every attempt, so receivers
can drop duplicates. ``body`` is the exact JSON that every attempt sends and signs.
Manual redeliveries are rate-limited per delivery: ``redeliver_started_at`` marks one in
flight, ``redeliver_window_at`` / ``redeliver_count`` count them in a one-minute window.
"""

from sqlalchemy import JSON, BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from ability_gateway.server.models.base import metadata

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("task_id", String(40), nullable=False, unique=True),
    Column("token_id", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("headers", JSON, nullable=True),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("next_attempt_at", BigInteger, nullable=True),
    Column("delivered_at", BigInteger, nullable=True),
    Column("redeliver_started_at", BigInteger, nullable=True),
    Column("redeliver_window_at", BigInteger, nullable=True),
    Column("redeliver_count", Integer, nullable=False, server_default="0"),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), nullable=False),
    Column("number", Integer, nullable=False),
    Column("manual", Boolean, nullable=False, server_default="0"),
    Column("started_at", BigInteger, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("http_status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    # The first KB of the receiver's answer.
    Column("response_excerpt", Text, nullable=True),
    Column("node", String(100), nullable=True),
    Index("ix_delivery_attempts_delivery_id", "delivery_id"),
)
