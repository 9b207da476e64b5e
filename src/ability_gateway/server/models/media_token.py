"""Which token stored which media.

``media`` rows are deduplicated by content, so one row may serve many tokens; this link
(keyed by the content's SHA-256, which outlives a re-stored object's key) records every
token that stored or reused it, so stored bytes can be counted and capped per token.
"""

from sqlalchemy import BigInteger, Column, Index, PrimaryKeyConstraint, String, Table

from ability_gateway.server.models.base import metadata

media_tokens = Table(
    "media_tokens",
    metadata,
    Column("sha256", String(64), nullable=False),
    Column("token_id", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_used_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("sha256", "token_id"),
    Index("ix_media_tokens_token_id", "token_id"),
)
