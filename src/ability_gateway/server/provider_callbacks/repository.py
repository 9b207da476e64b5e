"""Queries of completion notices: the ``webhook-id`` values already received."""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import provider_notices


async def was_received(conn: AsyncConnection, webhook_id: str, external_id: str) -> bool:
    """Whether this notice was received and not yet expired."""
    found = await conn.execute(
        select(provider_notices.c.webhook_id).where(
            provider_notices.c.webhook_id == webhook_id,
            provider_notices.c.external_id == external_id,
            provider_notices.c.expires_at > db_now_ms(),
        )
    )
    return found.first() is not None


def prune(conn: Connection) -> int:
    """Forget notices whose signature could not verify any more; how many."""
    return conn.execute(
        delete(provider_notices).where(provider_notices.c.expires_at <= db_now_ms())
    ).rowcount


def claim(conn: Connection, webhook_id: str, external_id: str, keep_ms: int) -> bool:
    """Record a notice as being applied for ``keep_ms``: False when it already was (and not
    expired), so of two copies arriving at once only one is applied. A copy that arrives
    later with a newer timestamp keeps the record for its own window too."""
    prune(conn)
    try:
        with conn.begin_nested():
            conn.execute(
                insert(provider_notices).values(
                    webhook_id=webhook_id,
                    external_id=external_id,
                    received_at=db_now_ms(),
                    expires_at=db_now_ms() + keep_ms,
                )
            )
        return True
    except IntegrityError:
        conn.execute(
            update(provider_notices)
            .where(
                provider_notices.c.webhook_id == webhook_id,
                provider_notices.c.external_id == external_id,
                provider_notices.c.expires_at < db_now_ms() + keep_ms,
            )
            .values(expires_at=db_now_ms() + keep_ms)
        )
        return False


def forget(conn: Connection, webhook_id: str, external_id: str) -> None:
    """A claimed notice could not be applied (no task waits yet): its retry must be."""
    conn.execute(
        delete(provider_notices).where(
            provider_notices.c.webhook_id == webhook_id,
            provider_notices.c.external_id == external_id,
        )
    )
