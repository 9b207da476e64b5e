"""What the admin API answers: every token's tasks and each one's whole story, call logs by
``logId``, the callback dead-letter and its redelivery, executors' recent outcomes.

The task story is what an admin needs to answer "what happened to my call?" from a
``taskId``, a ``requestId`` or a ``logId``: the task, each Coze call (executor, operation,
HTTP status, Coze code, Coze ``logid``, ``debug_url``, duration, attempt), the media it
stored, and its callback with every attempt. Secrets never appear: a task's
``callbackHeaders`` are listed by name only.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from sqlalchemy.engine import RowMapping

from ability_gateway.server.admin import repository
from ability_gateway.server.admin.repository import CallLogFilter, TaskFilter
from ability_gateway.server.callbacks import service as callbacks
from ability_gateway.server.errors import BadRequest, FieldError, GatewayError, NotFound, shorten
from ability_gateway.server.runner.queue import running_with_key
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks.bodies import iso_time
from ability_gateway.server.tasks.steps import TASK_JOB
from ability_gateway.server.usage.service import parse_time

MAX_REDELIVER = 100
REDELIVER_CONCURRENCY = 8
RECENT_WINDOW_MS = 3_600_000


def parse_instant(field: str, value: str | None) -> int | None:
    """An ISO 8601 time with its offset (``2026-12-02T08:00:00Z``) as epoch ms."""
    return None if value is None else parse_time(field, value)


def time_range(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    since_ms, until_ms = parse_instant("from", since), parse_instant("to", until)
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise BadRequest("The request is invalid", [FieldError("to", "must be after from")])
    return since_ms, until_ms


def _when(ms: int | None) -> str | None:
    return None if ms is None else iso_time(ms)


# --- tasks ------------------------------------------------------------------------------


def task_summary(row: RowMapping) -> dict[str, Any]:
    error = row["error_payload"] or {}
    return {
        "id": row["id"],
        "tokenId": row["token_id"],
        "abilityId": row["ability_id"],
        "executorId": row["executor_id"],
        "status": row["status"],
        "requestId": row["request_id"],
        "logId": row["log_id"],
        "executeId": row["execute_id"],
        "externalJobId": row["external_id"],
        "durationMs": row["duration_ms"],
        "errorCode": error.get("code"),
        "errorMessage": error.get("message"),
        "callbackState": row["delivery_state"],
        "createTime": iso_time(row["created_at"]),
        "updateTime": iso_time(row["updated_at"]),
        "finishTime": _when(row["finished_at"]),
    }


async def list_tasks(
    gateway: GatewayState, where: TaskFilter, after: str | None, limit: int
) -> dict[str, Any]:
    async with gateway.db.read() as conn:
        rows = await repository.list_tasks(conn, where, after, limit + 1)
    items = [task_summary(row) for row in rows[:limit]]
    return {"items": items, "nextCursor": items[-1]["id"] if len(rows) > limit else None}


def call_log_view(row: RowMapping, *, detail: bool = False) -> dict[str, Any]:
    view = {
        "logId": row["id"],
        "taskId": row["task_id"],
        "executorId": row["executor_id"],
        "node": row["node"],
        "workflowId": row["workflow_id"],
        "operation": row["operation"],
        "httpStatus": row["http_status"],
        "cozeCode": row["coze_code"],
        "cozeMessage": row["coze_message"],
        "cozeLogId": row["coze_logid"],
        "executeId": row["execute_id"],
        "debugUrl": row["debug_url"],
        "error": row["error"],
        "durationMs": row["duration_ms"],
        "attempt": row["attempt"],
        "time": iso_time(row["created_at"]),
    }
    if detail:
        view.update(
            tokenId=row["token_id"],
            abilityId=row["ability_id"],
            requestId=row["request_id"],
            requestBody=row["request_body"],
            responseBody=row["response_body"],
        )
    return view


def _media_view(row: RowMapping) -> dict[str, Any]:
    return {
        "role": row["role"],
        "key": row["key"],
        "url": f"/media/{row['key']}",
        "contentType": row["content_type"],
        "size": row["size"],
        "sourceUrl": row["source_url"],
        "time": iso_time(row["linked_at"]),
    }


async def task_story(gateway: GatewayState, task_id: str) -> dict[str, Any]:
    async with gateway.db.read() as conn:
        task = await repository.get_task(conn, task_id)
        if task is None:
            raise NotFound(f"Task {shorten(task_id)!r} does not exist")
        logs = await repository.call_logs_of(conn, task_id)
        delivery, attempts = await repository.delivery_of(conn, task_id)
        stored = await repository.media_of(conn, task_id)
    error = task["error_payload"] or {}
    headers = task["callback_headers"] or {}
    return {
        "task": {
            "id": task["id"],
            "tokenId": task["token_id"],
            "abilityId": task["ability_id"],
            "executorId": task["executor_id"],
            "status": task["status"],
            "requestId": task["request_id"],
            "logId": task["log_id"],
            "executeId": task["execute_id"],
            "externalJobId": task["external_id"],
            "inputs": task["inputs"],
            "metadata": task["client_metadata"],
            "callbackUrl": task["callback_url"],
            # Names only: their values may be the receiver's secrets.
            "callbackHeaderNames": sorted(headers),
            "resultPayload": task["result_payload"],
            "errorPayload": task["error_payload"],
            "errorCode": error.get("code"),
            "durationMs": task["duration_ms"],
            "createTime": iso_time(task["created_at"]),
            "updateTime": iso_time(task["updated_at"]),
            "finishTime": _when(task["finished_at"]),
            "deadlineTime": _when(task["deadline_at"]),
        },
        "callLogs": [call_log_view(row) for row in logs],
        "media": [_media_view(row) for row in stored],
        "callback": callbacks.delivery_view(delivery, attempts),
    }


# --- call logs --------------------------------------------------------------------------


async def get_call_log(gateway: GatewayState, log_id: int) -> dict[str, Any]:
    async with gateway.db.read() as conn:
        row = await repository.get_call_log(conn, log_id)
    if row is None:
        raise NotFound(f"Call log {log_id} does not exist")
    return call_log_view(row, detail=True)


async def list_call_logs(
    gateway: GatewayState, where: CallLogFilter, after: int | None, limit: int
) -> dict[str, Any]:
    async with gateway.db.read() as conn:
        rows = await repository.list_call_logs(conn, where, after, limit + 1)
    items = [call_log_view(row) for row in rows[:limit]]
    return {"items": items, "nextCursor": str(items[-1]["logId"]) if len(rows) > limit else None}


# --- callbacks --------------------------------------------------------------------------


def delivery_summary(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["id"],
        "taskId": row["task_id"],
        "tokenId": row["token_id"],
        "url": row["url"],
        "state": row["state"],
        "attemptCount": row["attempts"],
        "lastStatus": row["last_status"],
        "lastError": row["last_error"],
        "nextAttemptTime": _when(row["next_attempt_at"]) if row["state"] == "pending" else None,
        "deliveredTime": _when(row["delivered_at"]),
        "createTime": iso_time(row["created_at"]),
        "updateTime": iso_time(row["updated_at"]),
    }


async def list_deliveries(
    gateway: GatewayState,
    states: tuple[str, ...],
    token_id: str | None,
    after: str | None,
    limit: int,
) -> dict[str, Any]:
    async with gateway.db.read() as conn:
        rows = await repository.list_deliveries(conn, states, token_id, after, limit + 1)
    items = [delivery_summary(row) for row in rows[:limit]]
    return {"items": items, "nextCursor": items[-1]["id"] if len(rows) > limit else None}


async def redeliver_many(gateway: GatewayState, task_ids: list[str]) -> list[dict[str, Any]]:
    """One manual attempt per task's delivery, with the same guarantees as a token's own
    redelivery (same ``webhook-id``, one attempt in flight per delivery, its rate limit),
    a few at once. Each task gets its outcome; one failing does not stop the others."""
    gate = asyncio.Semaphore(REDELIVER_CONCURRENCY)

    async def one(task_id: str) -> dict[str, Any]:
        async with gate:
            try:
                view = await callbacks.redeliver_task(gateway, task_id)
            except GatewayError as exc:
                return {"taskId": task_id, "outcome": "refused", "error": exc.message}
        delivery = view["delivery"] or {}
        last = view["attempts"][-1] if view["attempts"] else {}
        return {
            "taskId": task_id,
            "outcome": "delivered" if delivery.get("state") == "delivered" else "failed",
            "state": delivery.get("state"),
            "httpStatus": last.get("httpStatus"),
            "error": last.get("error"),
        }

    return list(await asyncio.gather(*(one(task_id) for task_id in task_ids)))


# --- executors --------------------------------------------------------------------------


def _percentile(sorted_ms: list[int], q: float) -> int | None:
    if not sorted_ms:
        return None
    rank = max(0, min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[rank]


async def recent_outcomes(gateway: GatewayState) -> dict[str, dict[str, Any]]:
    """Per executor, over the last hour: calls, failures, calls per Coze code (``none``: no
    answer), p50/p95 duration (nearest rank)."""
    async with gateway.db.read() as conn:
        rows = await repository.recent_calls(conn, RECENT_WINDOW_MS)
    durations: dict[str, list[int]] = {}
    codes: dict[str, dict[str, int]] = {}
    failures: dict[str, int] = {}
    for row in rows:
        executor = row["executor_id"]
        durations.setdefault(executor, []).append(int(row["duration_ms"]))
        code = "none" if row["coze_code"] is None else str(row["coze_code"])
        counted = codes.setdefault(executor, {})
        counted[code] = counted.get(code, 0) + 1
        if code != "0":
            failures[executor] = failures.get(executor, 0) + 1
    return {
        executor: {
            "windowSeconds": RECENT_WINDOW_MS // 1000,
            "calls": len(spent),
            "failures": failures.get(executor, 0),
            "codes": codes[executor],
            "p50Ms": _percentile(spent, 0.5),
            "p95Ms": _percentile(spent, 0.95),
        }
        for executor, spent in durations.items()
    }


_NO_CALLS = {
    "windowSeconds": RECENT_WINDOW_MS // 1000,
    "calls": 0,
    "failures": 0,
    "codes": {},
    "p50Ms": None,
    "p95Ms": None,
}


async def executor_views(gateway: GatewayState) -> list[dict[str, Any]]:
    """Each executor: its settings, circuit state (and why it opened), load, and the last
    hour's calls (counts per Coze code, p50/p95 latency)."""
    recent = await recent_outcomes(gateway)
    items = []
    for executor in gateway.executors.all():
        # A task's job is keyed by its executor: its steps running now, on every node.
        running = await gateway.db.run_write(
            partial(running_with_key, kind=TASK_JOB, key=executor.id)
        )
        items.append(
            {
                "id": executor.id,
                "baseUrl": executor.base_url,
                "auth": executor.auth.kind,
                "weight": executor.weight,
                "maxConcurrency": executor.max_concurrency,
                "qps": executor.qps,
                "allowAsync": executor.allow_async,
                "state": executor.breaker.state,
                "reason": executor.breaker.reason,
                "consecutiveFailures": executor.breaker.failures,
                "inFlight": executor.in_flight,
                "runningTasks": running,
                "recent": recent.get(executor.id, _NO_CALLS),
            }
        )
    return items
