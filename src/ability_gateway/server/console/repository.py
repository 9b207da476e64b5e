"""Every query on console sessions (writes are sync functions for ``Database.run_write``)."""

from __future__ import annotations

from sqlalchemy import RowMapping, delete, insert, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.auth.repository import PRINCIPAL_COLUMNS
from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import console_sessions, tokens


def insert_session(conn: Connection, id_hash: str, token_id: str, lifetime_ms: int) -> int:
    """A new session of ``token_id``; its expiry (database clock)."""
    result = conn.execute(
        insert(console_sessions)
        .values(
            id_hash=id_hash,
            token_id=token_id,
            created_at=db_now_ms(),
            expires_at=db_now_ms() + lifetime_ms,
        )
        .returning(console_sessions.c.expires_at)
    )
    return int(result.scalar_one())


# The session and its token, only while both are valid: a revoked or expired token ends
# every session it has.
_FIND = (
    select(
        console_sessions.c.expires_at.label("session_expires_at"),
        *PRINCIPAL_COLUMNS,
    )
    .select_from(console_sessions.join(tokens, tokens.c.id == console_sessions.c.token_id))
    .where(
        console_sessions.c.expires_at > db_now_ms(),
        tokens.c.revoked_at.is_(None),
        or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > db_now_ms()),
    )
)


async def find_session(conn: AsyncConnection, id_hash: str) -> RowMapping | None:
    statement = _FIND.where(console_sessions.c.id_hash == id_hash)
    return (await conn.execute(statement)).mappings().first()


def delete_session(conn: Connection, id_hash: str) -> None:
    conn.execute(delete(console_sessions).where(console_sessions.c.id_hash == id_hash))


def forget_expired(conn: Connection, limit: int) -> int:
    """Delete up to ``limit`` sessions that have expired."""
    ids = select(console_sessions.c.id_hash).where(console_sessions.c.expires_at <= db_now_ms())
    gone = delete(console_sessions).where(console_sessions.c.id_hash.in_(ids.limit(limit)))
    return len(conn.execute(gone.returning(console_sessions.c.id_hash)).all())
