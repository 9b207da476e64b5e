"""Stored media: one row per distinct content (deduplicated by SHA-256).

The object's key is random (unguessable even by someone holding the same bytes);
``last_used_at`` moves whenever a task reuses the content, and retention deletes what
has not been used for ``GATEWAY_MEDIA_RETENTION_DAYS``.
"""

from sqlalchemy import BigInteger, Column, Index, String, Table, Text

from ability_gateway.server.models.base import metadata

media = Table(
    "media",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("content_type", String(100), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("source_url", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("last_used_at", BigInteger, nullable=False),
    Index("ix_media_last_used_at", "last_used_at"),
)
