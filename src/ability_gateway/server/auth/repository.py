"""Every query on the tokens table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import tokens


async def insert_token(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(tokens).values(created_at=db_now_ms(), **values))


async def find_active_by_hash(conn: AsyncConnection, token_hash: str) -> RowMapping | None:
    now = db_now_ms()
    query = select(tokens.c.id, tokens.c.name, tokens.c.scopes).where(
        tokens.c.token_hash == token_hash,
        tokens.c.revoked_at.is_(None),
        or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now),
    )
    return (await conn.execute(query)).mappings().first()


async def list_tokens(conn: AsyncConnection) -> list[RowMapping]:
    query = select(
        tokens.c.id,
        tokens.c.name,
        tokens.c.token_prefix,
        tokens.c.scopes,
        tokens.c.created_at,
        tokens.c.expires_at,
        tokens.c.revoked_at,
    ).order_by(tokens.c.created_at)
    return list((await conn.execute(query)).mappings().all())


async def revoke(conn: AsyncConnection, token_id: str) -> bool:
    result = await conn.execute(
        update(tokens)
        .where(and_(tokens.c.id == token_id, tokens.c.revoked_at.is_(None)))
        .values(revoked_at=db_now_ms())
    )
    return bool(result.rowcount)


async def db_now(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(db_now_ms()))).scalar_one())
