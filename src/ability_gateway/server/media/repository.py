"""Queries of the media domain."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import media, media_tokens


def link_token(conn: Connection, sha256: str, token_id: str) -> None:
    """Record that ``token_id`` stored (or reused) the content ``sha256``."""
    moved = conn.execute(
        update(media_tokens)
        .where(media_tokens.c.sha256 == sha256, media_tokens.c.token_id == token_id)
        .values(last_used_at=db_now_ms())
    )
    if moved.rowcount:
        return
    try:
        with conn.begin_nested():  # the same token storing the same bytes at the same moment
            conn.execute(
                insert(media_tokens).values(
                    sha256=sha256,
                    token_id=token_id,
                    created_at=db_now_ms(),
                    last_used_at=db_now_ms(),
                )
            )
    except IntegrityError:
        pass


async def sha256_of(conn: AsyncConnection, key: str) -> str | None:
    """The SHA-256 of the content stored under ``key`` (None for an object with no row)."""
    found = await conn.execute(select(media.c.sha256).where(media.c.key == key))
    value = found.scalar()
    return str(value) if value is not None else None
