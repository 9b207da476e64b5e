"""What an invocation answers: 200 with a finished task's result or its uniform error, 202
while it goes on; waiting on a task for that answer; an idempotent replay's answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import RowMapping

from ability_gateway.server.abilities.catalog import AbilityDefinition
from ability_gateway.server.auth.service import Principal
from ability_gateway.server.errors import (
    Conflict,
    GatewayError,
    NotFound,
    UpstreamError,
    UpstreamTimeout,
    shorten,
)
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks import bodies, idempotency, repository
from ability_gateway.server.tasks.schemas import TERMINAL_STATUSES

MAX_WAIT_SECONDS = 60.0  # the longest `Prefer: wait=N` honoured


@dataclass(frozen=True, slots=True)
class InvokeOptions:
    """What the request's headers ask for."""

    wait_seconds: float
    respond_async: bool = False
    idempotency_key: str | None = None
    applied: str | None = None  # what goes back in Preference-Applied
    no_cache: bool = False  # Cache-Control: no-cache (skip the result cache, refresh it)


@dataclass(frozen=True, slots=True)
class InvokeAnswer:
    """The HTTP answer: 200 with a finished task's result, or 202 while it goes on."""

    status_code: int
    body: dict[str, Any]
    task_id: str
    retry_after: int | None = None
    cache: str | None = None  # X-Cache: HIT or MISS, for abilities with a result cache
    replayed: bool = False  # Idempotent-Replayed: true (an Idempotency-Key seen before)


def invoke_body(ability: AbilityDefinition, row: dict[str, Any] | RowMapping) -> dict[str, Any]:
    """The spec §3.2.3 shape of a task, finished or not."""
    return bodies.invoke_body(row, ability.id, ability.provider)


def raise_for_task(row: dict[str, Any] | RowMapping) -> None:
    """A failed, timed-out or canceled task answers with the uniform error body."""
    status = row["status"]
    if status not in ("failed", "timeout", "canceled"):
        return
    error = row["error_payload"] or {}
    extra = {
        "taskId": row["id"],
        "logId": row["log_id"],
        "debugUrl": error.get("debugUrl"),
        "status": status,
    }
    message = str(error.get("message") or f"The task {status}")
    if status == "timeout":
        raise UpstreamTimeout(message, extra=extra)
    if status == "canceled":
        raise Conflict(message, extra=extra)
    code = error.get("code")
    raise UpstreamError(message, code=code if isinstance(code, int) else 502, extra=extra)


def answer(
    ability: AbilityDefinition, row: dict[str, Any] | RowMapping, *, retry_after: int
) -> InvokeAnswer:
    if row["status"] in TERMINAL_STATUSES:
        raise_for_task(row)
        return InvokeAnswer(200, invoke_body(ability, row), row["id"])
    return InvokeAnswer(202, invoke_body(ability, row), row["id"], retry_after=retry_after)


async def wait_and_answer(
    gateway: GatewayState,
    principal: Principal,
    ability: AbilityDefinition,
    task_id: str,
    wait_seconds: float,
) -> InvokeAnswer:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        async with gateway.db.read() as conn:
            row = await repository.get_task(conn, task_id, principal.token_id)
        if row is None:
            raise NotFound(f"Task {shorten(task_id)!r} does not exist")
        remaining = deadline - loop.time()
        if row["status"] in TERMINAL_STATUSES or remaining <= 0:
            return answer(ability, row, retry_after=ability.retry_after_seconds)
        await gateway.task_events.wait(task_id, min(remaining, 1.0))


async def replay(
    gateway: GatewayState,
    principal: Principal,
    ability: AbilityDefinition,
    key: str,
    digest: str,
    options: InvokeOptions,
) -> InvokeAnswer:
    async with gateway.db.read() as conn:
        row = await idempotency.find(conn, principal.token_id, key)
    if row is None:  # pragma: no cover - the insert conflicted, so the key exists
        raise GatewayError("Idempotency key vanished")
    if row["request_hash"] != digest:
        async with gateway.db.read() as conn:
            earlier = await repository.get_task(conn, row["task_id"], principal.token_id)
        raise Conflict(
            "This Idempotency-Key was used with a different request",
            extra={"taskId": row["task_id"], "status": earlier["status"] if earlier else None},
        )
    # A replay answers like the first call would: at once for asynchronous work.
    wait = 0.0 if options.respond_async or ability.mode != "sync" else options.wait_seconds
    answered = await wait_and_answer(gateway, principal, ability, row["task_id"], wait)
    return replace(answered, replayed=True)
