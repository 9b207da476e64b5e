"""Queries of completion notices: the ``webhook-id`` values already received."""

from __future__ import annotations

from sqlalchemy import delete, insert, select
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


def remember(conn: Connection, webhook_id: str, external_id: str, keep_ms: int) -> None:
    """Record a notice as received for ``keep_ms`` (the same notice twice at once: one row)."""
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
    except IntegrityError:
        pass
