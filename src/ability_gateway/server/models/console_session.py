"""Console sign-ins: one row per session (``server/console/sessions.py``).

The browser holds a random session id in an ``HttpOnly`` cookie; the row keeps only its
HMAC under ``GATEWAY_CONSOLE_SESSION_SECRET``, so neither the database nor a log can give a
working cookie back. A session is its token's: revoked or expired token, no session.
"""

from sqlalchemy import BigInteger, Column, Index, String, Table

from ability_gateway.server.models.base import metadata

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_id", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_console_sessions_token_id", "token_id"),
    Index("ix_console_sessions_expires_at", "expires_at"),
)
