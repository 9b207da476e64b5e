"""``Idempotency-Key``: every query on the keys a token used (per token, kept
``GATEWAY_IDEMPOTENCY_HOURS``). The key is written in the transaction that accepts the
task, so a retried request finds the task its first try created, in whatever state."""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import idempotency_keys


async def exists(conn: AsyncConnection, token_id: str, key: str, retention_ms: int) -> bool:
    """Whether the token used ``key`` within the retention."""
    found = await conn.execute(
        select(idempotency_keys.c.task_id).where(
            idempotency_keys.c.token_id == token_id,
            idempotency_keys.c.key == key,
            idempotency_keys.c.created_at >= db_now_ms() - retention_ms,
        )
    )
    return found.first() is not None


async def find(conn: AsyncConnection, token_id: str, key: str) -> RowMapping | None:
    """The request hash and task of a used key."""
    found = await conn.execute(
        select(idempotency_keys.c.request_hash, idempotency_keys.c.task_id).where(
            idempotency_keys.c.token_id == token_id, idempotency_keys.c.key == key
        )
    )
    return found.mappings().first()


def record(
    conn: Connection,
    token_id: str,
    key: str,
    request_hash: str | None,
    task_id: str,
    *,
    forget_older_than_ms: int | None = None,
) -> None:
    """Write the key of a task being accepted (an IntegrityError: the key is taken).

    ``forget_older_than_ms``: a key older than the retention is forgotten first, then reused.
    """
    if forget_older_than_ms is not None:
        conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.token_id == token_id,
                idempotency_keys.c.key == key,
                idempotency_keys.c.created_at < db_now_ms() - forget_older_than_ms,
            )
        )
    conn.execute(
        insert(idempotency_keys).values(
            token_id=token_id,
            key=key,
            request_hash=request_hash,
            task_id=task_id,
            created_at=db_now_ms(),
        )
    )
