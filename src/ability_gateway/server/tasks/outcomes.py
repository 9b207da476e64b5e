"""How a task's step ends: the snapshot a step works on, the writes it ends with (call
logs, the task's terminal state or progress, the result cache) and the result payloads
(success, failure, timeout) — shared by the state machine (``tasks/steps.py``) and by the
completion notices of external jobs (``tasks/service.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.engine import Connection

from ability_gateway.server.abilities.catalog import AbilityDefinition
from ability_gateway.server.providers.coze.client import CozeCall, RunOutcome
from ability_gateway.server.providers.coze.parsing import (
    as_str,
)
from ability_gateway.server.runner.steps import StepResult
from ability_gateway.server.tasks import repository, terminal
from ability_gateway.server.tasks.bodies import STATE_BY_STATUS
from ability_gateway.server.tasks.phases import External
from ability_gateway.server.tasks.results import find_urls, media_entries

if TYPE_CHECKING:
    pass

# Coze drops a synchronous run's connection at about 90 s (reference §6).
SYNC_RUN_CAP_SECONDS = 95.0


@dataclass(slots=True)
class TaskSnapshot:
    """What a step needs to know about its task."""

    id: str
    ability_id: str
    executor_id: str | None
    status: str
    request_id: str
    inputs: dict[str, Any]
    client_metadata: dict[str, Any] | None
    remaining_s: float
    external_id: str | None = None
    node: str | None = None  # the runner working on it, recorded on its call logs
    cache_key: str | None = None  # set: a succeeded result is cached under it
    cache_ttl_ms: int = 0
    token_id: str | None = None  # whose task: the media it stores are linked to the token
    traceparent: str | None = None  # the trace its steps join when a runner runs them


@dataclass(slots=True)
class Finished:
    """Filled by a finishing write with the task row it committed (for the response)."""

    row: dict[str, Any] | None = None


# --- the writes a step ends with -------------------------------------------------------


def _record_calls(conn: Connection, task: TaskSnapshot, calls: list[CozeCall]) -> int | None:
    if not calls:
        return None
    return repository.insert_call_logs(conn, task.id, task.executor_id or "", calls, task.node)


def finish_writes(
    task: TaskSnapshot,
    calls: list[CozeCall],
    *,
    status: str,
    result_payload: dict[str, Any] | None = None,
    error_payload: dict[str, Any] | None = None,
    execute_id: str | None = None,
    holder: Finished | None = None,
) -> Callable[[Connection], None]:
    def write(conn: Connection) -> None:
        log_id = _record_calls(conn, task, calls)
        error = error_payload
        if error is not None and log_id is not None:
            error = {**error, "logId": log_id}
        row = terminal.finish(
            conn,
            task.id,
            status=status,
            log_id=log_id,
            execute_id=execute_id,
            result_payload=result_payload,
            error_payload=error,
        )
        if row is not None and status == "succeeded" and task.cache_key and result_payload:
            repository.store_cached(
                conn, task.cache_key, task.ability_id, result_payload, task.id, task.cache_ttl_ms
            )
        if holder is not None:
            holder.row = None if row is None else dict(row)

    return write


def progress_writes(
    task: TaskSnapshot,
    calls: list[CozeCall],
    *,
    execute_id: str | None = None,
    external_id: str | None = None,
) -> Callable[[Connection], None]:
    def write(conn: Connection) -> None:
        log_id = _record_calls(conn, task, calls)
        repository.mark_running(
            conn, task.id, log_id=log_id, execute_id=execute_id, external_id=external_id
        )

    return write


# --- results ---------------------------------------------------------------------------


def success_payload(
    ability: AbilityDefinition,
    task: TaskSnapshot,
    shaped: dict[str, Any],
    *,
    executor_id: str | None,
    execute_id: str | None,
    debug_url: str | None,
    raw: dict[str, Any] | None,
    usage: Any = None,
    external_id: str | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "model": ability.provider,
        "state": STATE_BY_STATUS["succeeded"],
        "taskId": task.id,
        "executeId": execute_id,
        "debugUrl": debug_url,
        "executorId": executor_id,
        "workflowId": ability.workflow_id,
    }
    if isinstance(usage, dict):
        metadata["usage"] = usage
    if external_id is not None:
        metadata["externalJobId"] = external_id
    if warnings:
        # E.g. an output that could not be copied into our storage (its ossUrl is null).
        metadata["warnings"] = warnings
    if task.client_metadata is not None:
        metadata["client"] = task.client_metadata
    return {**shaped, "metadata": metadata, "raw": raw or {}}


def succeed(
    ability: AbilityDefinition,
    task: TaskSnapshot,
    calls: list[CozeCall],
    shaped: dict[str, Any],
    *,
    execute_id: str | None,
    debug_url: str | None,
    raw: dict[str, Any] | None,
    usage: Any = None,
    external_id: str | None = None,
    holder: Finished | None = None,
    warnings: list[str] | None = None,
) -> StepResult:
    payload = success_payload(
        ability,
        task,
        shaped,
        executor_id=task.executor_id,
        execute_id=execute_id,
        debug_url=debug_url,
        raw=raw,
        usage=usage,
        external_id=external_id,
        warnings=warnings,
    )
    try:
        orjson.dumps(payload)
    except (TypeError, orjson.JSONEncodeError):
        # E.g. an output nested deeper than JSON encoders accept: fail visibly, not a 500.
        message = "The workflow's output could not be stored (nested too deeply)"
        return fail(task, calls, {"code": 502, "message": message}, holder=holder)
    writes = finish_writes(
        task,
        calls,
        status="succeeded",
        result_payload=payload,
        execute_id=execute_id,
        holder=holder,
    )
    return StepResult("done", writes=writes, touched_task=task.id)


def fail(
    task: TaskSnapshot,
    calls: list[CozeCall],
    error_payload: dict[str, Any],
    *,
    status: str = "failed",
    execute_id: str | None = None,
    holder: Finished | None = None,
) -> StepResult:
    writes = finish_writes(
        task,
        calls,
        status=status,
        error_payload=error_payload,
        execute_id=execute_id,
        holder=holder,
    )
    return StepResult("done", writes=writes, touched_task=task.id)


def timeout_result(
    ability: AbilityDefinition, task: TaskSnapshot, calls: list[CozeCall], holder: Finished | None
) -> StepResult:
    message = f"The task did not finish within the ability's {ability.timeout_seconds:g} s"
    return fail(task, calls, {"code": 504, "message": message}, status="timeout", holder=holder)


def upstream_failure(
    ability: AbilityDefinition,
    task: TaskSnapshot,
    outcome: RunOutcome,
    *,
    sync_cap_hit: bool = False,
    holder: Finished | None = None,
) -> StepResult:
    last = outcome.last if outcome.calls else None
    if outcome.kind == "timeout":
        if sync_cap_hit:
            message = (
                f"Coze did not answer the synchronous run within {SYNC_RUN_CAP_SECONDS:g} s "
                "(allow async runs for long workflows: GATEWAY_COZE_ALLOW_ASYNC)"
            )
            return fail(
                task,
                outcome.calls,
                {"code": 504, "message": message},
                status="timeout",
                holder=holder,
            )
        return timeout_result(ability, task, outcome.calls, holder)
    if outcome.kind == "workflow_error" and last is not None:
        error = {
            "code": last.code,
            "message": last.message or "Workflow execution failed",
            "debugUrl": last.debug_url,
            "executeId": last.execute_id,
            "cozeLogId": last.logid,
        }
        return fail(task, outcome.calls, error, execute_id=last.execute_id, holder=holder)
    # The transport detail (addresses, exceptions) stays in the call log, not in the answer.
    if last is not None and last.http_status is None:
        message = "Coze could not be reached"
    else:
        message = "Coze answered without a usable response"
    return fail(task, outcome.calls, {"code": 502, "message": message}, holder=holder)


# --- the step --------------------------------------------------------------------------


def external_shaped(report: dict[str, Any]) -> dict[str, Any]:
    """The result of a finished generation job, from its report (query answer or notice)."""
    listed = report.get("images") or report.get("urls") or []
    images, videos = media_entries(find_urls(listed if isinstance(listed, list) else []))
    given = report.get("texts")
    texts = [t for t in given if isinstance(t, str)] if isinstance(given, list) else []
    return {"texts": texts, "images": images, "videos": videos, "assets": []}


def external_success(
    ability: AbilityDefinition,
    task: TaskSnapshot,
    calls: list[CozeCall],
    phase: External,
    report: dict[str, Any],
    holder: Finished | None,
    shaped: dict[str, Any],
    warnings: list[str],
) -> StepResult:
    return succeed(
        ability,
        task,
        calls,
        shaped,
        execute_id=phase.execute_id,
        debug_url=phase.debug_url,
        raw={"job": report},
        external_id=phase.external_id,
        holder=holder,
        warnings=warnings,
    )


def external_failure(
    task: TaskSnapshot,
    calls: list[CozeCall],
    phase: External,
    report: dict[str, Any],
    holder: Finished | None,
) -> StepResult:
    error = {
        "code": 502,
        "message": as_str(report.get("error")) or "The generation job failed",
        "externalJobId": phase.external_id,
        "executeId": phase.execute_id,
        "debugUrl": phase.debug_url,
    }
    return fail(task, calls, error, execute_id=phase.execute_id, holder=holder)
