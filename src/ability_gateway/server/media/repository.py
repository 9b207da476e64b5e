"""Queries of the media domain."""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import media, media_tokens, task_media


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


async def key_of(conn: AsyncConnection, sha256: str) -> str | None:
    """The object key of stored content, by its SHA-256."""
    return (await conn.execute(select(media.c.key).where(media.c.sha256 == sha256))).scalar()


def touch(conn: Connection, key: str) -> None:
    """The content under ``key`` was used again (retention counts from now)."""
    conn.execute(update(media).where(media.c.key == key).values(last_used_at=db_now_ms()))


def record(
    conn: Connection,
    *,
    key: str,
    sha256: str,
    content_type: str,
    size: int,
    source_url: str | None,
) -> None:
    """A newly stored object; the same content stored at the same moment (or left by a
    retention race) takes the new key."""
    try:
        with conn.begin_nested():
            conn.execute(
                insert(media).values(
                    key=key,
                    sha256=sha256,
                    content_type=content_type,
                    size=size,
                    source_url=source_url,
                    created_at=db_now_ms(),
                    last_used_at=db_now_ms(),
                )
            )
    except IntegrityError:
        conn.execute(
            update(media)
            .where(media.c.sha256 == sha256)
            .values(key=key, content_type=content_type, size=size, last_used_at=db_now_ms())
        )


async def unused_since(conn: AsyncConnection, cutoff_ms: int, limit: int) -> list[str]:
    """Keys of media unused for ``cutoff_ms``, oldest first."""
    rows = await conn.execute(
        select(media.c.key)
        .where(media.c.last_used_at < db_now_ms() - cutoff_ms)
        .order_by(media.c.last_used_at)
        .limit(limit)
    )
    return [str(key) for (key,) in rows.all()]


def forget_unused(conn: Connection, keys: list[str], cutoff_ms: int) -> None:
    """Delete the rows of removed objects that are still unused (content reused meanwhile
    keeps its row, and is stored again by its next use, which finds no object)."""
    if keys:
        conn.execute(
            delete(media).where(
                media.c.key.in_(keys), media.c.last_used_at < db_now_ms() - cutoff_ms
            )
        )


_LINK_TASK = {
    "sqlite": sqlite_insert(task_media).values(created_at=db_now_ms()).on_conflict_do_nothing(),
    "postgresql": postgresql_insert(task_media)
    .values(created_at=db_now_ms())
    .on_conflict_do_nothing(),
}


def link_task(conn: Connection, task_id: str, key: str, role: str) -> None:
    """Record that a task stored (``output``) or was given (``input``) this media (once)."""
    conn.execute(
        _LINK_TASK[conn.dialect.name], {"task_id": task_id, "media_key": key, "role": role}
    )
