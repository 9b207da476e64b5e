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


# What a Principal is made of (auth/service.principal_of); console sessions read the same.
PRINCIPAL_COLUMNS = (
    tokens.c.id,
    tokens.c.name,
    tokens.c.scopes,
    tokens.c.expires_at,
    tokens.c.rate_limit_per_minute,
    tokens.c.max_concurrent_tasks,
    tokens.c.quota_daily_invocations,
    tokens.c.quota_daily_by_ability,
    tokens.c.quota_media_bytes,
)
_FIND_ACTIVE = select(
    *PRINCIPAL_COLUMNS,
    # Matched by the value before a rotation: it works until its overlap ends.
    (tokens.c.token_hash != bindparam("token_hash")).label("by_previous"),
    tokens.c.previous_token_expires_at,
).where(
    or_(
        tokens.c.token_hash == bindparam("token_hash"),
        and_(
            tokens.c.previous_token_hash == bindparam("token_hash"),
            tokens.c.previous_token_expires_at > db_now_ms(),
        ),
    ),
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


# --- the admin's view and changes ------------------------------------------------------

_VIEW = select(
    tokens.c.id,
    tokens.c.name,
    tokens.c.token_prefix,
    tokens.c.scopes,
    tokens.c.rate_limit_per_minute,
    tokens.c.max_concurrent_tasks,
    tokens.c.created_at,
    tokens.c.updated_at,
    tokens.c.expires_at,
    tokens.c.revoked_at,
    tokens.c.last_used_at,
    tokens.c.previous_token_expires_at,
    tokens.c.previous_secret_expires_at,
    tokens.c.quota_daily_invocations,
    tokens.c.quota_daily_by_ability,
    tokens.c.quota_media_bytes,
    db_now_ms().label("now"),
)


async def get_view(conn: AsyncConnection, token_id: str) -> RowMapping | None:
    return (await conn.execute(_VIEW.where(tokens.c.id == token_id))).mappings().first()


async def list_views(
    conn: AsyncConnection, *, include_revoked: bool, after: str | None, limit: int
) -> list[RowMapping]:
    """Tokens by id (ids grow with time), ``limit`` after the cursor ``after``."""
    query = _VIEW.order_by(tokens.c.id).limit(limit)
    if not include_revoked:
        query = query.where(tokens.c.revoked_at.is_(None))
    if after is not None:
        query = query.where(tokens.c.id > after)
    return list((await conn.execute(query)).mappings().all())


def change(conn: Connection, token_id: str, values: dict[str, Any], expires_in_ms: Any) -> bool:
    """Change a live token's fields; ``expires_in_ms``: ``...`` leaves the expiry, None removes
    it, a number sets it that far from now (database clock)."""
    changes: dict[str, Any] = {**values, "updated_at": db_now_ms()}
    if expires_in_ms is not ...:
        changes["expires_at"] = None if expires_in_ms is None else db_now_ms() + expires_in_ms
    result = conn.execute(
        update(tokens)
        .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        .values(**changes)
    )
    return bool(result.rowcount)


def rotate_value(
    conn: Connection, token_id: str, new_hash: str, new_prefix: str, overlap_ms: int
) -> bool:
    """The token's value becomes ``new_hash``; the old one works ``overlap_ms`` more (0: not)."""
    keep = overlap_ms > 0
    result = conn.execute(
        update(tokens)
        .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        .values(
            previous_token_hash=tokens.c.token_hash if keep else None,
            previous_token_expires_at=db_now_ms() + overlap_ms if keep else None,
            token_hash=new_hash,
            token_prefix=new_prefix,
            updated_at=db_now_ms(),
        )
    )
    return bool(result.rowcount)


def rotate_secret(conn: Connection, token_id: str, new_secret: str, overlap_ms: int) -> bool:
    """The token's callbacks are signed with ``new_secret``, and with the old one too for
    ``overlap_ms`` (Standard Webhooks: several signatures in one header)."""
    keep = overlap_ms > 0
    result = conn.execute(
        update(tokens)
        .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        .values(
            previous_callback_secret=tokens.c.callback_secret if keep else None,
            previous_secret_expires_at=db_now_ms() + overlap_ms if keep else None,
            callback_secret=new_secret,
            updated_at=db_now_ms(),
        )
    )
    return bool(result.rowcount)


_TOUCH = (
    update(tokens)
    .where(
        tokens.c.id == bindparam("b_id"),
        or_(tokens.c.last_used_at.is_(None), tokens.c.last_used_at < bindparam("b_at")),
    )
    .values(last_used_at=bindparam("b_at"))
)


def touch(conn: Connection, used: dict[str, int]) -> None:
    """Record when tokens were last used (coalesced: one write for many requests)."""
    if used:
        conn.execute(_TOUCH, [{"b_id": token_id, "b_at": at} for token_id, at in used.items()])
