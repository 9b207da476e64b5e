"""Every query on the tokens table (writes are sync functions for Database.run_write)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, and_, bindparam, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import tokens


def insert_token(conn: Connection, values: dict[str, Any], expires_in_ms: int | None) -> int | None:
    """Insert a token; its expiry (database clock), if it has one."""
    expires_at = None if expires_in_ms is None else db_now_ms() + expires_in_ms
    result = conn.execute(
        insert(tokens)
        .values(created_at=db_now_ms(), expires_at=expires_at, **values)
        .returning(tokens.c.expires_at)
    )
    value = result.scalar_one()
    return None if value is None else int(value)


def revoke(conn: Connection, token_id: str) -> bool:
    result = conn.execute(
        update(tokens)
        .where(and_(tokens.c.id == token_id, tokens.c.revoked_at.is_(None)))
        .values(revoked_at=db_now_ms())
    )
    return bool(result.rowcount)


_FIND_ACTIVE = select(
    tokens.c.id,
    tokens.c.name,
    tokens.c.scopes,
    tokens.c.expires_at,
    tokens.c.rate_limit_per_minute,
    tokens.c.max_concurrent_tasks,
).where(
    tokens.c.token_hash == bindparam("token_hash"),
    tokens.c.revoked_at.is_(None),
    or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > db_now_ms()),
)


async def find_active_by_hash(conn: AsyncConnection, token_hash: str) -> RowMapping | None:
    return (await conn.execute(_FIND_ACTIVE, {"token_hash": token_hash})).mappings().first()


def set_limits(conn: Connection, token_id: str, values: dict[str, Any]) -> bool:
    result = conn.execute(update(tokens).where(tokens.c.id == token_id).values(**values))
    return bool(result.rowcount)


async def list_tokens(conn: AsyncConnection) -> list[RowMapping]:
    query = select(
        tokens.c.id,
        tokens.c.name,
        tokens.c.token_prefix,
        tokens.c.scopes,
        tokens.c.rate_limit_per_minute,
        tokens.c.max_concurrent_tasks,
        tokens.c.created_at,
        tokens.c.expires_at,
        tokens.c.revoked_at,
    ).order_by(tokens.c.created_at)
    return list((await conn.execute(query)).mappings().all())
