"""Invocations and tasks: accept, run or enqueue, wait, answer; query, list, cancel.

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
import hashlib
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from ability_gateway.server.abilities.catalog import AbilityDefinition
from ability_gateway.server.abilities.validation import (
    build_parameters,
    check_image_urls,
    is_http_url,
)
from ability_gateway.server.auth.limits import RateLimited
from ability_gateway.server.auth.service import Principal
from ability_gateway.server.db import db_now_ms
from ability_gateway.server.egress import Network, url_problem
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
from ability_gateway.server.media.images import verify_image
from ability_gateway.server.media.service import decode_data_url
from ability_gateway.server.models import idempotency_keys, tasks
from ability_gateway.server.providers.coze.client import CozeExecutor
from ability_gateway.server.runner import repository as jobs_repository
from ability_gateway.server.runner.repository import Lease
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks import cache, repository, terminal
from ability_gateway.server.tasks.schemas import TERMINAL_STATUSES, InvokeRequest
from ability_gateway.server.tasks.steps import (
    STATE_BY_STATUS,
    TASK_JOB,
    Finished,
    TaskSnapshot,
    external_failure,
    external_shaped,
    external_success,
)

MAX_METADATA_BYTES = 16 * 1024
MAX_CALLBACK_HEADERS = 20
MAX_WAIT_SECONDS = 60.0
# Headers a caller may not set on its callbacks: they belong to HTTP or to our signature.
RESERVED_CALLBACK_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
    }
)
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
# Visible ASCII and spaces: what every HTTP stack sends unchanged.
_HEADER_VALUE_RE = re.compile(r"^[\x20-\x7e]{0,4096}$")


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


def get_ability(gateway: GatewayState, ability_id: str) -> AbilityDefinition:
    ability = gateway.catalog.get(ability_id)
    if ability is None:
        raise NotFound(f"Ability {shorten(ability_id)!r} does not exist")
    return ability


def _check_callback(
    body: InvokeRequest, errors: list[FieldError], allow: tuple[Network, ...]
) -> None:
    if body.callbackUrl is not None:
        if not is_http_url(body.callbackUrl):
            errors.append(FieldError("callbackUrl", "must be an http(s) URL"))
        elif (problem := url_problem(body.callbackUrl, allow)) is not None:
            errors.append(FieldError("callbackUrl", problem))
    headers = body.callbackHeaders or {}
    if headers and body.callbackUrl is None:
        errors.append(FieldError("callbackHeaders", "needs a callbackUrl"))
    if len(headers) > MAX_CALLBACK_HEADERS:
        errors.append(FieldError("callbackHeaders", f"at most {MAX_CALLBACK_HEADERS} headers"))
    for name, value in headers.items():
        lowered = name.lower()
        if not _HEADER_NAME_RE.match(name):
            errors.append(FieldError(f"callbackHeaders.{name}", "is not a valid header name"))
        elif lowered in RESERVED_CALLBACK_HEADERS or lowered.startswith(("webhook-", "proxy-")):
            errors.append(FieldError(f"callbackHeaders.{name}", "is reserved by the gateway"))
        elif not _HEADER_VALUE_RE.match(value):
            errors.append(FieldError(f"callbackHeaders.{name}", "is not a valid header value"))


MAX_METADATA_DEPTH = 32


def _depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests (stops counting past ``limit``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > limit:
            break
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def _check_metadata(body: InvokeRequest, errors: list[FieldError]) -> None:
    if body.metadata is None:
        return
    if _depth(body.metadata, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        errors.append(FieldError("metadata", f"must nest at most {MAX_METADATA_DEPTH} levels"))
    elif len(orjson.dumps(body.metadata)) > MAX_METADATA_BYTES:
        errors.append(FieldError("metadata", f"must be at most {MAX_METADATA_BYTES} bytes as JSON"))


@dataclass(frozen=True, slots=True)
class PendingImage:
    """An ``imageBase64`` input, checked but not stored yet: it is stored only once every
    check has passed and the task is sure to run (not a replay, not a cache hit)."""

    field: str
    data: bytes
    kind: str

    @property
    def placeholder(self) -> str:
        # Stands in for the stored URL in the parameters until then; the same bytes give
        # the same placeholder, so the result cache keys on the content.
        return f"https://pending.invalid/sha256/{hashlib.sha256(self.data).hexdigest()}"


async def _parameters(
    gateway: GatewayState, ability: AbilityDefinition, body: InvokeRequest
) -> tuple[dict[str, Any], PendingImage | None]:
    """The workflow's parameters, checked; an ``imageBase64`` comes back to be stored later."""
    if body.imageBase64 is None:
        return build_parameters(ability, body.inputs, body.imageUrl), None
    field = ability.image_field
    if body.imageUrl is not None:
        raise BadRequest(
            "Give the image once",
            [FieldError("imageBase64", "give either imageUrl or imageBase64, not both")],
        )
    if field is None:
        raise BadRequest(
            "This ability takes no image",
            [FieldError("imageBase64", "this ability takes no image")],
        )
    if body.inputs.get(field) not in (None, ""):
        raise BadRequest(
            "Give the image once",
            [
                FieldError(
                    "imageBase64", f"give the image either as imageBase64 or as inputs.{field}"
                )
            ],
        )
    settings = gateway.settings
    data, kind = decode_data_url(body.imageBase64, settings.max_image_bytes)
    image = PendingImage(field, data, kind)
    parameters = build_parameters(ability, body.inputs, image.placeholder)
    # Decoded, not only sniffed (magic bytes then junk is not an image); off the event loop.
    await asyncio.to_thread(verify_image, data, kind, settings.max_image_pixels)
    return parameters, image


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def request_hash(ability_id: str, body: InvokeRequest) -> str:
    canonical = orjson.dumps(
        {"abilityId": ability_id, **body.model_dump(exclude_none=True)},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


# --- responses -------------------------------------------------------------------------


def invoke_body(ability: AbilityDefinition, row: dict[str, Any] | RowMapping) -> dict[str, Any]:
    """The spec §3.2.3 shape of a task, finished or not."""
    status = row["status"]
    payload = row["result_payload"] or {}
    metadata = payload.get("metadata") or {
        "model": ability.provider,
        "state": STATE_BY_STATUS.get(status, status),
        "taskId": row["id"],
    }
    if "metadata" not in payload and row.get("client_metadata") is not None:
        metadata["client"] = row["client_metadata"]
    return {
        "abilityId": ability.id,
        "provider": ability.provider,
        "status": status,
        "requestId": row["request_id"],
        "logId": row["log_id"],
        "durationMs": row["duration_ms"],
        "texts": payload.get("texts", []),
        "images": payload.get("images", []),
        "videos": payload.get("videos", []),
        "assets": payload.get("assets", []),
        "metadata": metadata,
        "raw": payload.get("raw", {}),
    }


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
    _check_callback(body, errors, gateway.settings.egress_networks)
    _check_metadata(body, errors)
    if errors:
        raise BadRequest("The request is invalid", errors)
    if ability.status != "active":
        raise BadRequest(f"Ability {ability.id!r} is {ability.status}")
    parameters, image = await _parameters(gateway, ability, body)
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
        found = (
            await conn.execute(
                select(idempotency_keys.c.task_id).where(
                    idempotency_keys.c.token_id == principal.token_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.created_at >= db_now_ms() - retention_ms,
                )
            )
        ).first()
    return found is not None


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
            conn.execute(
                insert(idempotency_keys).values(
                    token_id=principal.token_id,
                    key=idempotency_key,
                    request_hash=digest,
                    task_id=task_id,
                    created_at=db_now_ms(),
                )
            )
        log_id = cache.record_hit(conn, task_id, executor_id, ability.workflow_id, owner)
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
            # A key older than the retention is forgotten, then reused.
            conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.token_id == principal.token_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.created_at < db_now_ms() - idem_expired_before,
                )
            )
            conn.execute(
                insert(idempotency_keys).values(
                    token_id=principal.token_id,
                    key=key,
                    request_hash=digest,
                    task_id=task_id,
                    created_at=db_now_ms(),
                )
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
        row = (
            (
                await conn.execute(
                    select(idempotency_keys.c.request_hash, idempotency_keys.c.task_id).where(
                        idempotency_keys.c.token_id == principal.token_id,
                        idempotency_keys.c.key == key,
                    )
                )
            )
            .mappings()
            .first()
        )
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


# --- queries and cancel ----------------------------------------------------------------


def task_view(row: RowMapping | dict[str, Any]) -> dict[str, Any]:
    """Spec §3.3."""
    return {
        "id": row["id"],
        "abilityId": row["ability_id"],
        "status": row["status"],
        "requestId": row["request_id"],
        "logId": row["log_id"],
        "createTime": iso_time(row["created_at"]),
        "updateTime": iso_time(row["updated_at"]),
        "resultPayload": row["result_payload"],
        "errorPayload": row["error_payload"],
        # Beyond spec §3.3: the state of the task's callback, when it has one.
        "callback": None
        if row.get("delivery_id") is None
        else {
            "id": row["delivery_id"],
            "state": row["delivery_state"],
            "attempts": row["delivery_attempts"],
        },
    }


TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_task_id(task_id: str) -> None:
    """Ids are ours: anything else (NUL bytes, 1 MB of junk) is simply not a task."""
    if not TASK_ID.match(task_id):
        raise NotFound(f"Task {shorten(task_id)!r} does not exist")


async def get_task(gateway: GatewayState, principal: Principal, task_id: str) -> dict[str, Any]:
    check_task_id(task_id)
    async with gateway.db.read() as conn:
        row = await repository.get_task(conn, task_id, principal.token_id)
    if row is None:
        raise NotFound(f"Task {shorten(task_id)!r} does not exist")
    return task_view(row)


async def list_tasks(
    gateway: GatewayState,
    principal: Principal,
    *,
    status: str | None,
    ability_id: str | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    if cursor is not None and not TASK_ID.match(cursor):
        raise BadRequest(
            "Invalid cursor", [FieldError("cursor", "is not a cursor from nextCursor")]
        )
    async with gateway.db.read() as conn:
        rows = await repository.list_tasks(
            conn,
            principal.token_id,
            status=status,
            ability_id=ability_id,
            cursor=cursor,
            limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [task_view(r) for r in rows],
        "nextCursor": rows[-1]["id"] if more and rows else None,
    }


async def cancel_task(gateway: GatewayState, principal: Principal, task_id: str) -> dict[str, Any]:
    check_task_id(task_id)

    def cancel(conn: Connection) -> dict[str, Any] | None:
        jobs_repository.lock_for_task(conn, task_id)
        row = terminal.cancel(conn, task_id, principal.token_id)
        if row is None:
            return None
        jobs_repository.end_for_task(conn, task_id, "canceled", kind=TASK_JOB)
        return dict(row)

    canceled = await gateway.db.run_write(cancel)
    if canceled is None:
        async with gateway.db.read() as conn:
            current = await repository.get_task(conn, task_id, principal.token_id)
        if current is None:
            raise NotFound(f"Task {shorten(task_id)!r} does not exist")
        raise Conflict(
            f"Task {task_id!r} already finished ({current['status']}) and cannot be canceled",
            extra={"taskId": task_id, "status": current["status"]},
        )
    gateway.task_events.notify(task_id)
    async with gateway.db.read() as conn:
        row = await repository.get_task(conn, task_id, principal.token_id)
    assert row is not None
    return task_view(row)


# --- inbound completion notices of external generation jobs ----------------------------


async def complete_external_job(
    gateway: GatewayState, external_id: str, notice: dict[str, Any]
) -> bool:
    """Finish the task waiting on ``external_id`` from a verified notice.

    False when no task waits on that id. Idempotent: a task that already finished
    (an earlier notice, a poll, a cancel, a timeout) is left as it is. Outputs are
    mirrored first, outside any transaction.
    """
    async with gateway.db.read() as conn:
        waiting = (
            await conn.execute(
                select(tasks.c.id, tasks.c.token_id, tasks.c.status).where(
                    tasks.c.external_id == external_id
                )
            )
        ).first()
    if waiting is None:
        return False
    found, token_id, status = waiting
    if status in TERMINAL_STATUSES:
        return True  # ended already (an earlier notice, a poll, a cancel): download nothing
    succeeded = str(notice.get("status", "")).lower() in (
        "succeeded",
        "success",
        "done",
        "completed",
    )
    shaped = external_shaped(notice) if succeeded else {}
    warnings = await gateway.media.mirror_all(shaped, token_id) if succeeded else []

    def complete(conn: Connection) -> str | None:
        jobs_repository.lock_for_task(conn, found)
        row = repository.find_by_external_id(conn, external_id)
        if row is None or row["status"] in TERMINAL_STATUSES:
            return None
        ability = gateway.catalog.get(row["ability_id"])
        snapshot = TaskSnapshot(
            id=row["id"],
            ability_id=row["ability_id"],
            executor_id=row["executor_id"],
            status=row["status"],
            request_id=row["request_id"],
            inputs=row["inputs"] or {},
            client_metadata=row["client_metadata"],
            remaining_s=1.0,
            external_id=external_id,
        )
        payload = {"externalId": external_id, "executeId": row["execute_id"]}
        if succeeded and ability is not None:
            result = external_success(
                ability, snapshot, [], payload, notice, None, shaped, warnings
            )
        else:
            result = external_failure(snapshot, [], payload, notice, None)
        assert result.writes is not None
        result.writes(conn)
        jobs_repository.end_for_task(conn, row["id"], "done", kind=TASK_JOB)
        return str(row["id"])

    task_id = await gateway.db.run_write(complete)
    if task_id:
        gateway.task_events.notify(task_id)
    return True
