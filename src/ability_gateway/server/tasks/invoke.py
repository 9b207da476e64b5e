"""Invocations: checks; a replay or a cache hit; else accept, run inline or enqueue, wait, answer.

A synchronous ability's invocation runs its first step inline, holding the job's
lease itself (the job row is written with the task, so a crash mid-call is
recovered by the sweeper): two write transactions and one upstream call.

    accept:  INSERT task + job (leased to this process) [+ idempotency key]   [txn 1]
    run:     Coze /v1/workflow/run, retried on transient failures              [no txn,
                                                                                 concurrent with 1]
    finish:  INSERT call log(s) + UPDATE task (terminal) + job done, fenced     [txn 2]

Other invocations (long generation abilities, ``Prefer: respond-async``) insert a
queued task and job and answer 202 at once; the runner takes it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from ability_gateway.server.abilities.catalog import AbilityDefinition
from ability_gateway.server.abilities.validation import check_image_urls
from ability_gateway.server.auth.limits import RateLimited
from ability_gateway.server.auth.service import Principal
from ability_gateway.server.errors import (
    BadRequest,
    Conflict,
    FieldError,
    GatewayError,
    NotFound,
    UpstreamError,
    UpstreamTimeout,
    shorten,
)
from ability_gateway.server.ids import new_id
from ability_gateway.server.providers.coze.client import CozeExecutor
from ability_gateway.server.runner import repository as jobs_repository
from ability_gateway.server.runner.repository import Lease
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks import bodies, cache, idempotency, repository, terminal
from ability_gateway.server.tasks.outcomes import Finished, TaskSnapshot
from ability_gateway.server.tasks.requests import (
    check_callback,
    check_metadata,
    parameters_of,
    request_hash,
)
from ability_gateway.server.tasks.schemas import TERMINAL_STATUSES, InvokeRequest
from ability_gateway.server.tasks.service import get_ability
from ability_gateway.server.tasks.steps import TASK_JOB

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


# --- responses -------------------------------------------------------------------------


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


def _answer(
    ability: AbilityDefinition, row: dict[str, Any] | RowMapping, *, retry_after: int
) -> InvokeAnswer:
    if row["status"] in TERMINAL_STATUSES:
        raise_for_task(row)
        return InvokeAnswer(200, invoke_body(ability, row), row["id"])
    return InvokeAnswer(202, invoke_body(ability, row), row["id"], retry_after=retry_after)


# --- invoke ----------------------------------------------------------------------------


async def invoke(
    gateway: GatewayState,
    principal: Principal,
    ability_id: str,
    body: InvokeRequest,
    request_id: str,
    options: InvokeOptions,
) -> InvokeAnswer:
    """Checks first, then what may answer without calling Coze (a replay, a cache hit),
    then a new task. Nothing is stored and no probe slot is taken before that point."""
    ability = get_ability(gateway, ability_id)
    errors: list[FieldError] = []
    check_callback(body, errors, gateway.settings.egress_networks)
    check_metadata(body, errors)
    if errors:
        raise BadRequest("The request is invalid", errors)
    if ability.status != "active":
        raise BadRequest(f"Ability {ability.id!r} is {ability.status}")
    parameters, image = await parameters_of(gateway, ability, body)
    # A named executor is checked now (unknown → 400); a weighted choice waits until a
    # task will really call Coze, so a cache hit is served while every executor is down.
    named = gateway.executors.choose(body.executorId) if body.executorId is not None else None
    # Caller's image URLs: the egress policy, unless every executor the task may get reads
    # internal URLs by design (a self-hosted Coze: `allowInternalImageUrls`).
    may_use = [named] if named else gateway.executors.all()
    internal = bool(may_use) and all(e.allow_internal_image_urls for e in may_use)
    allow = gateway.settings.egress_networks
    check_image_urls(ability, body.inputs, body.imageUrl, allow, internal_allowed=internal)

    if options.idempotency_key is not None and await _key_exists(
        gateway, principal, options.idempotency_key
    ):
        # "This exact task again": the replay comes first, before any cache or limit.
        digest = request_hash(ability.id, body)
        return await _replay(gateway, principal, ability, options.idempotency_key, digest, options)
    if principal.max_concurrent_tasks:
        async with gateway.db.read() as conn:
            active = await repository.count_active(conn, principal.token_id)
        if active >= principal.max_concurrent_tasks:
            raise RateLimited(
                f"This token already has {active} unfinished tasks "
                f"(at most {principal.max_concurrent_tasks})",
                headers={"Retry-After": str(ability.retry_after_seconds)},
            )

    inline = ability.mode == "sync" and not options.respond_async
    key = cache.cache_key(ability, parameters) if ability.cache and inline else None
    leading = False
    if key is not None and not options.no_cache:
        hit = await cache.lookup(gateway.db, key)
        if hit is None:
            flight = gateway.flights.leader(key)
            if flight is None:
                leading = True
            else:  # the same request is running here: wait for it and reuse its result
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(flight), options.wait_seconds)
                hit = await cache.lookup(gateway.db, key)
        if hit is not None:
            try:
                return await _answer_from_cache(
                    gateway, principal, ability, body, request_id, hit, options.idempotency_key
                )
            except IntegrityError:  # the same key, used at the same moment: replay it
                assert options.idempotency_key is not None
                digest = request_hash(ability.id, body)
                return await _replay(
                    gateway, principal, ability, options.idempotency_key, digest, options
                )
    try:
        executor = named or gateway.executors.choose(None)
        # Half-open: an inline task's call is the one probe; the reservation bridges the
        # moments until its call starts (the call then holds the breaker until it ends) and
        # is given back on every path. A queued task reserves nothing: its call, when the
        # runner makes it, is counted while it lasts.
        probe = executor.breaker.reserve() if inline else None
        try:
            if image is not None:
                stored = await gateway.media.store(image.data, image.kind, principal.token_id)
                parameters[image.field] = stored
            answer = await _invoke(
                gateway, principal, ability, body, request_id, options, parameters, executor, key
            )
        finally:
            executor.breaker.release(probe)
    finally:
        if leading and key is not None:
            gateway.flights.land(key)
    return answer if key is None else replace(answer, cache="MISS")


async def _key_exists(gateway: GatewayState, principal: Principal, key: str) -> bool:
    retention_ms = int(gateway.settings.idempotency_hours * 3_600_000)
    async with gateway.db.read() as conn:
        return await idempotency.exists(conn, principal.token_id, key, retention_ms)


async def _answer_from_cache(
    gateway: GatewayState,
    principal: Principal,
    ability: AbilityDefinition,
    body: InvokeRequest,
    request_id: str,
    hit: cache.Hit,
    idempotency_key: str | None = None,
) -> InvokeAnswer:
    """A new task, finished at once with the cached result (its own id, log row, callback)."""
    digest = request_hash(ability.id, body) if idempotency_key else None
    task_id = new_id("task")
    payload = cache.reuse(hit, task_id, body.metadata, principal.token_id)
    # No executor ran this task; another token's hit does not learn which one ran the first.
    own = hit.token_id == principal.token_id
    executor_id = body.executorId or (hit.executor_id if own else None) or "cache"
    owner, _ = gateway.runner.lease

    def write(conn: Connection) -> dict[str, Any]:
        repository.insert_task(
            conn,
            {
                "id": task_id,
                "token_id": principal.token_id,
                "ability_id": ability.id,
                "executor_id": executor_id,
                "status": "running",
                "request_id": request_id,
                "inputs": {},
                "client_metadata": body.metadata,
                "callback_url": body.callbackUrl,
                "callback_headers": body.callbackHeaders,
            },
            int(ability.timeout_seconds * 1000),
        )
        if idempotency_key is not None:
            idempotency.record(conn, principal.token_id, idempotency_key, digest, task_id)
        log_id = repository.insert_cache_hit_log(
            conn, task_id, executor_id, ability.workflow_id, owner
        )
        row = terminal.finish(
            conn, task_id, status="succeeded", log_id=log_id, result_payload=payload
        )
        assert row is not None
        return dict(row)

    row = await gateway.db.run_write(write)
    return replace(_answer(ability, row, retry_after=ability.retry_after_seconds), cache="HIT")


async def _invoke(
    gateway: GatewayState,
    principal: Principal,
    ability: AbilityDefinition,
    body: InvokeRequest,
    request_id: str,
    options: InvokeOptions,
    parameters: dict[str, Any],
    executor: CozeExecutor,
    result_key: str | None,
) -> InvokeAnswer:
    task_id = new_id("task")
    inline = ability.mode == "sync" and not options.respond_async
    status = "running" if inline else "queued"
    task_values = {
        "id": task_id,
        "token_id": principal.token_id,
        "ability_id": ability.id,
        "executor_id": executor.id,
        "status": status,
        "request_id": request_id,
        "inputs": parameters,
        "client_metadata": body.metadata,
        "callback_url": body.callbackUrl,
        "callback_headers": body.callbackHeaders,
    }
    owner, ttl_ms = gateway.runner.lease
    token = gateway.runner.new_token()
    lease = (owner, token, ttl_ms) if inline else None
    key = options.idempotency_key
    digest = request_hash(ability.id, body) if key else None
    idem_expired_before = int(gateway.settings.idempotency_hours * 3_600_000)

    def accept(conn: Connection) -> int:
        if key is not None:
            idempotency.record(
                conn,
                principal.token_id,
                key,
                digest,
                task_id,
                forget_older_than_ms=idem_expired_before,
            )
        repository.insert_task(conn, task_values, int(ability.timeout_seconds * 1000))
        return jobs_repository.insert_job(
            conn, kind=TASK_JOB, task_id=task_id, payload={"phase": "start"}, lease=lease
        )

    # The task and its job commit before anything runs upstream: a crash after this point
    # leaves a leased job that the sweeper hands to a runner.
    try:
        job_id = await gateway.db.run_write(accept)
    except IntegrityError:
        if key is None:
            raise
        return await _replay(gateway, principal, ability, key, digest or "", options)

    if not inline:
        gateway.runner.wake()
        row = {**task_values, "log_id": None, "duration_ms": None, "result_payload": None}
        return _answer(ability, row, retry_after=ability.retry_after_seconds)

    snapshot = TaskSnapshot(
        id=task_id,
        ability_id=ability.id,
        executor_id=executor.id,
        status=status,
        request_id=request_id,
        inputs=parameters,
        client_metadata=body.metadata,
        remaining_s=ability.timeout_seconds,
        node=owner,
        cache_key=result_key,
        cache_ttl_ms=int(ability.cache.ttl_seconds * 1000) if ability.cache else 0,
        token_id=principal.token_id,
    )
    holder = Finished()
    leased = Lease(
        id=job_id,
        kind=TASK_JOB,
        task_id=task_id,
        payload={"phase": "start"},
        token=token,
        steps=1,
        crash_count=0,
    )

    async def run_first_step() -> dict[str, Any] | None:
        result = await gateway.runner.run_leased(leased, preloaded=(snapshot, holder))
        if result is None or result.state == "queued":
            return None
        return holder.row

    # A caller that hangs up does not stop the task: it still finishes and is recorded.
    loop = asyncio.get_running_loop()
    started = loop.time()
    work = gateway.track(run_first_step())
    try:
        finished = await asyncio.wait_for(asyncio.shield(work), timeout=options.wait_seconds)
    except TimeoutError:
        finished = None
    if finished is not None:
        return _answer(ability, finished, retry_after=ability.retry_after_seconds)
    # The first step did not end the task (it waits on Coze or on another step): wait on.
    left = max(0.0, options.wait_seconds - (loop.time() - started))
    return await _wait_and_answer(gateway, principal, ability, task_id, left)


async def _wait_and_answer(
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
            return _answer(ability, row, retry_after=ability.retry_after_seconds)
        await gateway.task_events.wait(task_id, min(remaining, 1.0))


async def _replay(
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
    return await _wait_and_answer(gateway, principal, ability, row["task_id"], wait)
