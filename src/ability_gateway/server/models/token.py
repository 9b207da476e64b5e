"""API tokens: stored as SHA-256 hashes, shown once at creation (and at each rotation)."""

from sqlalchemy import JSON, BigInteger, Column, Integer, String, Table

from ability_gateway.server.models.base import metadata

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    # The first characters of the token, so an admin can tell tokens apart.
    Column("token_prefix", String(16), nullable=False),
    Column("scopes", JSON, nullable=False),
    # Needed in clear to sign callbacks (HMAC); never returned after creation.
    Column("callback_secret", String(100), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    # Limits of this token (None: unlimited).
    Column("rate_limit_per_minute", Integer, nullable=True),
    Column("max_concurrent_tasks", Integer, nullable=True),
    # Quotas (None: none): invocations a day, per ability a day ({ability id: n}), media bytes.
    Column("quota_daily_invocations", Integer, nullable=True),
    Column("quota_daily_by_ability", JSON, nullable=True),
    Column("quota_media_bytes", BigInteger, nullable=True),
    # Rotation: the value before the last rotation keeps working until its overlap ends.
    Column("previous_token_hash", String(64), nullable=True, unique=True),
    Column("previous_token_expires_at", BigInteger, nullable=True),
    # Both callback secrets sign during a secret rotation's overlap.
    Column("previous_callback_secret", String(100), nullable=True),
    Column("previous_secret_expires_at", BigInteger, nullable=True),
    # Coalesced: written at most once a minute per token per process, not per request.
    Column("last_used_at", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=True),
)
