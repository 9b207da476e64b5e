"""Cached results of deterministic abilities (opt-in per ability in the catalog)."""

from sqlalchemy import JSON, BigInteger, Column, Index, String, Table

from ability_gateway.server.models.base import metadata

result_cache = Table(
    "result_cache",
    metadata,
    # SHA-256 of the ability, its workflow and the canonical parameters.
    Column("key", String(64), primary_key=True),
    Column("ability_id", String(100), nullable=False),
    Column("result_payload", JSON, nullable=False),
    Column("source_task_id", String(40), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_result_cache_expires_at", "expires_at"),
)
