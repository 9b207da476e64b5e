"""Completion notices already received, by ``webhook-id``, for as long as a replay could verify.

A notice's signature holds for the tolerance window around its timestamp; within it, the same
notice posted again is answered "already received" and changes nothing. Rows past
``expires_at`` could not verify any more and are pruned.
"""

from sqlalchemy import BigInteger, Column, Index, PrimaryKeyConstraint, String, Table

from ability_gateway.server.models.base import metadata

provider_notices = Table(
    "provider_notices",
    metadata,
    Column("webhook_id", String(255), nullable=False),
    Column("external_id", String(128), nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("webhook_id", "external_id"),
    Index("ix_provider_notices_expires_at", "expires_at"),
)
