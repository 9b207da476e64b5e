"""Idempotency keys: a retried invoke with the same key and body gets the same task."""

from sqlalchemy import BigInteger, Column, Index, PrimaryKeyConstraint, String, Table

from ability_gateway.server.models.base import metadata

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("token_id", String(32), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("task_id", String(40), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("token_id", "key"),
    Index("ix_idempotency_keys_created_at", "created_at"),
)
