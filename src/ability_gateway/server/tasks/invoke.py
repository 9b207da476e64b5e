"""Invocations: checks; a replay or a cache hit; else accept, run inline or enqueue, wait, answer.

A synchronous ability's invocation runs its first step inline, holding the job's
lease itself (the job row is written with the task, so a crash mid-call is
recovered by the sweeper): two write transactions and one upstream call.

    accept:  INSERT task + job (leased to this process) [+ idempotency key]   [txn 1]
    run:     Coze /v1/workflow/run, retried on transient failures              [no txn,
                                                                                 concurrent with 1]
    finish:  INSERT call log(s) + UPDATE task (terminal) + job done, fenced     [txn 2]

Other invocations (long generation abilities, ``Prefer: respond-async``) insert a
queued task and job and answer 202 at once; the runner takes it from there. So does a
synchronous one whose executor is at its ``maxConcurrency`` (the enqueue finds no room for
the lease): its request then waits for the task as it would for a long first step. What an
invocation answers, and waiting for it, are in ``answers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ability_gateway.server.abilities.catalog import AbilityDefinition
from ability_gateway.server.abilities.validation import check_image_urls
from ability_gateway.server.auth.limits import RateLimited
from ability_gateway.server.auth.service import Principal
from ability_gateway.server.errors import (
    BadRequest,
    FieldError,
)
from ability_gateway.server.ids import new_id
from ability_gateway.server.logs import log_event
from ability_gateway.server.media import repository as media_repository
from ability_gateway.server.providers.coze.client import CozeExecutor
from ability_gateway.server.runner.queue import Enqueued, enqueue
from ability_gateway.server.runner.repository import Lease
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks import cache, idempotency, repository, terminal
from ability_gateway.server.tasks.answers import (
    InvokeAnswer,
    InvokeOptions,
    answer,
    replay,
    wait_and_answer,
)
from ability_gateway.server.tasks.outcomes import Finished, TaskSnapshot
from ability_gateway.server.tasks.phases import START
from ability_gateway.server.tasks.requests import (
    check_callback,
    check_metadata,
    parameters_of,
    request_hash,
)
from ability_gateway.server.tasks.schemas import InvokeRequest
from ability_gateway.server.tasks.service import get_ability
from ability_gateway.server.tasks.steps import TASK_JOB, InlineStart
from ability_gateway.server.tracing import current_traceparent
from ability_gateway.server.usage import quotas

logger = logging.getLogger(__name__)

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
        return await replay(gateway, principal, ability, options.idempotency_key, digest, options)
    if principal.max_concurrent_tasks:
        async with gateway.db.read() as conn:
            active = await repository.count_active(conn, principal.token_id)
        if active >= principal.max_concurrent_tasks:
            gateway.metrics.refused("concurrency")
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
            gateway.metrics.cache_lookup(ability.id, hit=True)
            try:
                return await _answer_from_cache(
                    gateway, principal, ability, body, request_id, hit, options.idempotency_key
                )
            except IntegrityError:  # the same key, used at the same moment: replay it
                assert options.idempotency_key is not None
                digest = request_hash(ability.id, body)
                return await replay(
                    gateway, principal, ability, options.idempotency_key, digest, options
                )
    if key is not None:  # X-Cache: MISS (Cache-Control: no-cache included)
        gateway.metrics.cache_lookup(ability.id, hit=False)
    try:
        executor = named or gateway.executors.choose(None)
        # Half-open: an inline task's call is the one probe; the reservation bridges the
        # moments until its call starts (the call then holds the breaker until it ends) and
        # is given back on every path. A queued task reserves nothing: its call, when the
        # runner makes it, is counted while it lasts.
        probe = executor.breaker.reserve() if inline else None
        try:
            upload_key = None
            if image is not None:
                # A used-up daily quota refuses before the upload is stored for nothing.
                try:
                    await quotas.refuse_if_used_up(
                        gateway.db, principal, ability.id, gateway.settings.quota_timezone
                    )
                except quotas.QuotaExceeded:
                    gateway.metrics.refused("quota")
                    raise
                upload_key, stored = await gateway.media.store_keyed(
                    image.data,
                    image.kind,
                    principal.token_id,
                    media_quota=principal.quota_media_bytes,
                )
                parameters[image.field] = stored
            answer = await _invoke(
                gateway,
                principal,
                ability,
                body,
                request_id,
                options,
                parameters,
                executor,
                key,
                upload_key=upload_key,
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
    owner = gateway.runner.owner

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
                "traceparent": current_traceparent(),  # its callback joins the request's trace
            },
            int(ability.timeout_seconds * 1000),
        )
        if idempotency_key is not None:
            idempotency.record(conn, principal.token_id, idempotency_key, digest, task_id)
        log_id = repository.insert_cache_hit_log(
            conn, task_id, executor_id, ability.workflow_id, owner
        )
        quotas.charge(conn, principal, ability.id, gateway.settings.quota_timezone)  # a hit counts
        row = terminal.finish(
            conn, task_id, status="succeeded", log_id=log_id, result_payload=payload, cache_hit=True
        )
        assert row is not None
        return dict(row)

    try:
        row = await gateway.db.run_write(write)
    except quotas.QuotaExceeded:
        gateway.metrics.refused("quota")
        raise
    return replace(answer(ability, row, retry_after=ability.retry_after_seconds), cache="HIT")


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
    *,
    upload_key: str | None = None,
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
        # The request's span: the parent of the steps a runner runs later, and of the callback.
        "traceparent": current_traceparent(),
    }
    # Taken at once, unless the executor's concurrency cap is reached (then a runner's claim
    # takes the job in turn, and this request waits for the task like any other).
    lease = gateway.runner.lease_request(TASK_JOB, executor.id) if inline else None
    key = options.idempotency_key
    digest = request_hash(ability.id, body) if key else None
    idem_expired_before = int(gateway.settings.idempotency_hours * 3_600_000)

    def accept(conn: Connection) -> Enqueued:
        if key is not None:
            idempotency.record(
                conn,
                principal.token_id,
                key,
                digest,
                task_id,
                forget_older_than_ms=idem_expired_before,
            )
        # After the key: the same key at the same moment is a replay, not a refusal.
        quotas.charge(conn, principal, ability.id, gateway.settings.quota_timezone)
        job = enqueue(
            conn,
            TASK_JOB,
            task_id=task_id,
            payload=START.payload(),
            concurrency_key=executor.id,
            lease=lease,
        )
        values = task_values if job.leased or not inline else {**task_values, "status": "queued"}
        repository.insert_task(conn, values, int(ability.timeout_seconds * 1000))
        if upload_key is not None:  # the task's uploaded image: its input
            media_repository.link_task(conn, task_id, upload_key, "input")
        return job

    # The task and its job commit before anything runs upstream: a crash after this point
    # leaves a leased job that the sweeper hands to a runner.
    try:
        job = await gateway.db.run_write(accept)
    except quotas.QuotaExceeded:
        gateway.metrics.refused("quota")
        raise
    except IntegrityError:
        if key is None:
            raise
        return await replay(gateway, principal, ability, key, digest or "", options)
    log_event(
        logger,
        "task.transition",
        taskId=task_id,
        ability=ability.id,
        status=status if job.leased or not inline else "queued",
        executor=executor.id,
        tokenId=principal.token_id,
    )

    if inline and not job.leased:
        gateway.runner.wake()
        return await wait_and_answer(gateway, principal, ability, task_id, options.wait_seconds)
    if not inline:
        gateway.runner.wake()
        row = {**task_values, "log_id": None, "duration_ms": None, "result_payload": None}
        return answer(ability, row, retry_after=ability.retry_after_seconds)

    assert lease is not None
    assert job.leased_at_ms is not None
    snapshot = TaskSnapshot(
        id=task_id,
        ability_id=ability.id,
        executor_id=executor.id,
        status=status,
        request_id=request_id,
        inputs=parameters,
        client_metadata=body.metadata,
        remaining_s=ability.timeout_seconds,
        node=lease.owner,
        cache_key=result_key,
        cache_ttl_ms=int(ability.cache.ttl_seconds * 1000) if ability.cache else 0,
        token_id=principal.token_id,
    )
    holder = Finished()
    leased = Lease(
        id=job.id,
        kind=TASK_JOB,
        task_id=task_id,
        payload=START.payload(),
        token=lease.token,
        steps=1,
        crash_count=0,
        now_ms=job.leased_at_ms,
    )

    async def run_first_step() -> dict[str, Any] | None:
        result = await gateway.runner.run_leased(leased, preloaded=InlineStart(snapshot, holder))
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
        return answer(ability, finished, retry_after=ability.retry_after_seconds)
    # The first step did not end the task (it waits on Coze or on another step): wait on.
    left = max(0.0, options.wait_seconds - (loop.time() - started))
    return await wait_and_answer(gateway, principal, ability, task_id, left)
