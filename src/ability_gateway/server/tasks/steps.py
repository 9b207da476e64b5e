"""The steps of a task's job (kind ``task.run``): a state machine whose phase the job's
payload keeps (typed in ``phases.py``).

    start ──sync run──────────────────────────────▶ output
      └──async submit──▶ coze_poll ──Success──────▶ output
                          (run history, 1 s → 10 s; throttling slows down)
    output ──text/json/media ability──▶ succeeded
           └──external_job ability──▶ external ──query workflow says done──▶ succeeded | failed
                                       (or a signed completion notice ends it: service.py)

Any phase: Coze's error → failed (Coze's code); no answer → failed (502); the task's
deadline → timeout. Each step is short; a wait is a rescheduled step (``next_run_at``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from ability_gateway.server.abilities.catalog import AbilityDefinition
from ability_gateway.server.logs import log_context, log_event
from ability_gateway.server.providers.coze.client import CozeCall, CozeExecutor
from ability_gateway.server.providers.coze.parsing import (
    as_int,
    as_str,
    end_output,
    history_end_vars,
    loads_or_text,
)
from ability_gateway.server.runner.steps import JobRegistry, KindPolicy, StepContext, StepResult
from ability_gateway.server.tasks import phases, repository, terminal
from ability_gateway.server.tasks.outcomes import (
    SYNC_RUN_CAP_SECONDS,
    Finished,
    TaskSnapshot,
    external_failure,
    external_shaped,
    external_success,
    fail,
    progress_writes,
    succeed,
    timeout_result,
    upstream_failure,
)
from ability_gateway.server.tasks.results import shape_output
from ability_gateway.server.tasks.schemas import TERMINAL_STATUSES
from ability_gateway.server.tracing import span

if TYPE_CHECKING:
    from ability_gateway.server.executors.registry import ExecutorRegistry
    from ability_gateway.server.state import Services

logger = logging.getLogger(__name__)

TASK_JOB = "task.run"
HISTORY_POLL_FIRST = 1.0
HISTORY_POLL_MAX = 10.0
THROTTLED_MAX = 30.0
THROTTLE_CODES = frozenset({4009, 4013, 4020})


@dataclass(frozen=True, slots=True)
class InlineStart:
    """What the request handler running a task's first step already knows (``preloaded``)."""

    snapshot: TaskSnapshot
    holder: Finished


def claim_policies(executors: ExecutorRegistry) -> dict[str, KindPolicy]:
    """How the runner claims task steps: an executor's ``maxConcurrency`` caps the steps of
    its tasks running at once on every node (a task job's key is its executor)."""
    caps = {e.id: e.max_concurrency for e in executors.all() if e.max_concurrency}
    return {TASK_JOB: KindPolicy(key_caps=caps)} if caps else {}


async def load_snapshot(ctx: StepContext[Services]) -> TaskSnapshot | None:
    task_id = ctx.lease.task_id
    if task_id is None:
        return None
    async with ctx.gateway.db.read() as conn:
        row = await repository.load_for_step(conn, task_id)
    if row is None:
        return None
    return TaskSnapshot(
        id=row["id"],
        ability_id=row["ability_id"],
        executor_id=row["executor_id"],
        status=row["status"],
        request_id=row["request_id"],
        inputs=row["inputs"] or {},
        client_metadata=row["client_metadata"],
        remaining_s=((row["deadline_at"] or 0) - ctx.lease.now_ms) / 1000,
        external_id=row["external_id"],
        node=ctx.owner,
        token_id=row["token_id"],
        traceparent=row.get("traceparent"),
    )


def crash_writes(
    conn: Connection, task_id: str | None, _payload: dict[str, Any], reason: str
) -> None:
    """The task's job crashed its runner too often: the task fails, visibly."""
    if task_id is None:
        return
    terminal.finish(
        conn,
        task_id,
        status="failed",
        error_payload={"code": 500, "message": f"The task could not be completed: {reason}"},
    )


async def run_task(ctx: StepContext[Services]) -> StepResult:
    if isinstance(ctx.preloaded, InlineStart):
        task, holder = ctx.preloaded.snapshot, ctx.preloaded.holder
    else:
        loaded = await load_snapshot(ctx)
        if loaded is None:
            return StepResult("done", error="the task no longer exists")
        task, holder = loaded, Finished()
    if task.status in TERMINAL_STATUSES:
        return StepResult("done")
    phase = phases.read(ctx.lease.payload)
    attributes = {
        "gateway.task.id": task.id,
        "gateway.ability.id": task.ability_id,
        "gateway.task.phase": phase.phase,
        "gateway.executor.id": task.executor_id,
        "gateway.job.id": ctx.lease.id,
        "gateway.job.step": ctx.lease.steps,
        "gateway.step.inline": ctx.preloaded is not None,
    }
    # Inline, the request's span is the parent; a runner's step continues the stored trace.
    # Every line logged in the step (its Coze calls) names the task.
    with (
        log_context(taskId=task.id, ability=task.ability_id),
        span("task.step", attributes, parent=task.traceparent) as traced,
    ):
        result = await _step(ctx.gateway, task, holder, phase)
        if traced.recording:
            traced.set({"gateway.step.result": result.state, "gateway.step.error": result.error})
        return result


async def _step(
    gateway: Services,
    task: TaskSnapshot,
    holder: Finished,
    phase: phases.Start | phases.CozePoll | phases.External,
) -> StepResult:
    ability = gateway.catalog.get(task.ability_id)
    if ability is None:
        message = f"Ability {task.ability_id!r} is no longer in the catalog"
        return fail(task, [], {"code": 500, "message": message}, holder=holder)
    if task.remaining_s <= 0:
        return timeout_result(ability, task, [], holder)
    executor = gateway.executors.get(task.executor_id)
    if executor is None:
        message = f"Executor {task.executor_id!r} is no longer configured"
        return fail(task, [], {"code": 503, "message": message}, holder=holder)
    if task.status == "queued":
        if await gateway.db.run_write(lambda conn: repository.mark_running(conn, task.id)):
            log_event(
                logger,
                "task.transition",
                taskId=task.id,
                ability=task.ability_id,
                status="running",
                executor=task.executor_id,
                requestId=task.request_id,
            )
        gateway.task_events.notify(task.id)
    if isinstance(phase, phases.CozePoll):
        return await _poll_coze(gateway, ability, task, executor, phase, holder)
    if isinstance(phase, phases.External):
        return await _poll_external(gateway, ability, task, executor, phase, holder)
    return await _start(gateway, ability, task, executor, holder)


async def _start(
    gateway: Services,
    ability: AbilityDefinition,
    task: TaskSnapshot,
    executor: CozeExecutor,
    holder: Finished,
) -> StepResult:
    loop = asyncio.get_running_loop()
    if ability.coze_async and executor.allow_async:
        outcome = await executor.submit_async(
            ability.workflow_id, task.inputs, deadline=loop.time() + min(task.remaining_s, 30.0)
        )
        if outcome.kind != "succeeded":
            return upstream_failure(ability, task, outcome, holder=holder)
        execute_id = outcome.last.execute_id
        if not execute_id:
            message = "Coze accepted the asynchronous run but named no execute_id"
            return fail(task, outcome.calls, {"code": 502, "message": message}, holder=holder)
        polling = phases.CozePoll(
            execute_id=execute_id, debug_url=outcome.last.debug_url, delay=HISTORY_POLL_FIRST
        )
        return StepResult(
            "queued",
            delay_s=min(HISTORY_POLL_FIRST, task.remaining_s),
            payload=polling.payload(),
            writes=progress_writes(task, outcome.calls, execute_id=execute_id),
            touched_task=task.id,
        )
    budget = min(task.remaining_s, SYNC_RUN_CAP_SECONDS)
    deadline = loop.time() + budget
    outcome = await executor.run_workflow(ability.workflow_id, task.inputs, deadline=deadline)
    # The account could not be reached: try another healthy one (the call logs name each).
    tried = {executor.id}
    while outcome.kind == "transport_error" and loop.time() < deadline:
        alternatives = [
            other
            for other in gateway.executors.alternatives(tried)
            # A self-hosted Coze's task may carry internal image URLs that no other kind
            # of account may be handed (they passed the egress policy only for it).
            if other.allow_internal_image_urls or not executor.allow_internal_image_urls
        ]
        if not alternatives:
            break
        other = alternatives[0]
        tried.add(other.id)
        retried = await other.run_workflow(ability.workflow_id, task.inputs, deadline=deadline)
        retried.calls = outcome.calls + retried.calls
        outcome = retried
    if outcome.kind != "succeeded" or outcome.last.response is None:
        capped = budget < task.remaining_s
        return upstream_failure(ability, task, outcome, sync_cap_hit=capped, holder=holder)
    last = outcome.last
    return await _after_output(
        gateway,
        ability,
        task,
        outcome.calls,
        last.response.get("data") if last.response else None,
        execute_id=last.execute_id,
        debug_url=last.debug_url,
        raw={"response": last.response},
        usage=(last.response or {}).get("usage"),
        holder=holder,
    )


async def _after_output(
    gateway: Services,
    ability: AbilityDefinition,
    task: TaskSnapshot,
    calls: list[CozeCall],
    data: Any,
    *,
    execute_id: str | None,
    debug_url: str | None,
    raw: dict[str, Any] | None,
    usage: Any,
    holder: Finished,
) -> StepResult:
    if data is None or data == "":
        message = "The workflow succeeded but returned no output"
        return fail(task, calls, {"code": 502, "message": message}, holder=holder)
    if ability.mode != "external_job":
        try:
            shaped = shape_output(ability, data)
        except (TypeError, ValueError, RecursionError):
            # Data, not a crash: retrying would read the same output again.
            message = "The workflow's output could not be read (nested too deeply)"
            return fail(task, calls, {"code": 502, "message": message}, holder=holder)
        # Coze's URLs expire: copy every image and video before the task (and its
        # callback) says it succeeded.
        warnings = await gateway.media.mirror_all(shaped, task.token_id, task.id)
        return succeed(
            ability,
            task,
            calls,
            shaped,
            execute_id=execute_id,
            debug_url=debug_url,
            raw=raw,
            usage=usage,
            holder=holder,
            warnings=warnings,
        )
    external_id = _external_id(end_output(data))
    if not external_id:
        message = "The workflow returned no generation job id"
        return fail(task, calls, {"code": 502, "message": message}, holder=holder)
    spec = ability.external_job
    assert spec is not None
    first = spec.poll_seconds if spec.query_workflow_id else task.remaining_s
    waiting = phases.External(
        external_id=external_id,
        execute_id=execute_id,
        debug_url=debug_url,
        delay=spec.poll_seconds,
    )
    return StepResult(
        "queued",
        delay_s=min(first, task.remaining_s),
        payload=waiting.payload(),
        writes=progress_writes(task, calls, execute_id=execute_id, external_id=external_id),
        touched_task=task.id,
    )


def _external_id(output: Any) -> str | None:
    value = loads_or_text(output) if isinstance(output, str) else output
    if isinstance(value, dict):
        value = value.get("id") or value.get("jobId") or value.get("output")
    text = as_str(value)
    if text is None:
        return None
    text = text.strip()
    return text if 0 < len(text) <= 128 else None


async def _poll_coze(
    gateway: Services,
    ability: AbilityDefinition,
    task: TaskSnapshot,
    executor: CozeExecutor,
    phase: phases.CozePoll,
    holder: Finished,
) -> StepResult:
    execute_id, delay = phase.execute_id, phase.delay
    call = await executor.get_run_history(
        ability.workflow_id, execute_id, timeout=min(task.remaining_s, 15.0)
    )
    item = None
    if call.code == 0 and call.response is not None:
        data = call.response.get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict):
            item = data[0]
    throttled = call.http_status == 429 or call.code in THROTTLE_CODES
    if item is None and (throttled or call.code is None or call.code == 5000):
        # Throttled, or no usable answer: slow down and keep waiting (the deadline still holds).
        wait = min(delay * 2, THROTTLED_MAX)
        return _reschedule(task, [call], phase.model_copy(update={"delay": wait}), wait)
    if item is None:
        error = {
            "code": call.code,
            "message": call.message or "Coze refused the run-history query",
            "executeId": execute_id,
            "debugUrl": phase.debug_url,
        }
        return fail(task, [call], error, execute_id=execute_id, holder=holder)
    status = item.get("execute_status")
    debug_url = as_str(item.get("debug_url")) or phase.debug_url
    if status == "Success":
        end_vars = history_end_vars(item.get("output"))
        if end_vars is None and item.get("is_output_trimmed"):
            message = "Coze trimmed the run's output (over 1 MB)"
            return fail(task, [call], {"code": 502, "message": message}, holder=holder)
        return await _after_output(
            gateway,
            ability,
            task,
            [call],
            end_vars,
            execute_id=execute_id,
            debug_url=debug_url,
            raw={"history": item},
            usage=item.get("usage"),
            holder=holder,
        )
    if status == "Fail":
        error = {
            "code": as_int(item.get("error_code")) or 720701013,
            "message": as_str(item.get("error_message")) or "Workflow execution failed",
            "debugUrl": debug_url,
            "executeId": execute_id,
            "cozeLogId": as_str(item.get("logid")),
        }
        return fail(task, [call], error, execute_id=execute_id, holder=holder)
    wait = min(delay * 1.5, HISTORY_POLL_MAX)
    later = phase.model_copy(update={"delay": wait})
    return _reschedule(task, [call], later, min(delay, HISTORY_POLL_MAX))


def _reschedule(
    task: TaskSnapshot,
    calls: list[CozeCall],
    phase: phases.CozePoll | phases.External,
    delay: float,
) -> StepResult:
    return StepResult(
        "queued",
        delay_s=max(0.0, min(delay, task.remaining_s)),
        payload=phase.payload(),
        writes=progress_writes(task, calls),
    )


async def _poll_external(
    gateway: Services,
    ability: AbilityDefinition,
    task: TaskSnapshot,
    executor: CozeExecutor,
    phase: phases.External,
    holder: Finished,
) -> StepResult:
    spec = ability.external_job
    external_id = phase.external_id
    if spec is None or spec.query_workflow_id is None:
        # Only a completion notice can end it: wait for one until the deadline.
        return _reschedule(task, [], phase, task.remaining_s)
    delay = phase.delay or spec.poll_seconds
    loop = asyncio.get_running_loop()
    outcome = await executor.run_workflow(
        spec.query_workflow_id,
        {spec.query_input: external_id},
        deadline=loop.time() + min(task.remaining_s, 30.0),
    )
    later = phase.model_copy(update={"delay": min(delay * 1.5, spec.max_poll_seconds)})
    if outcome.kind != "succeeded" or outcome.last.response is None:
        # The query failing is not the job failing: keep asking until the deadline.
        return _reschedule(task, outcome.calls, later, delay)
    report = loads_or_text(end_output(outcome.last.response.get("data")))
    if not isinstance(report, dict):
        return _reschedule(task, outcome.calls, later, delay)
    state = str(report.get("status", "")).lower()
    if state in ("succeeded", "success", "done", "completed"):
        shaped = external_shaped(report)
        warnings = await gateway.media.mirror_all(shaped, task.token_id, task.id)
        return external_success(
            ability, task, outcome.calls, phase, report, holder, shaped, warnings
        )
    if state in ("failed", "fail", "error"):
        return external_failure(task, outcome.calls, phase, report, holder)
    return _reschedule(task, outcome.calls, later, delay)


def register(jobs: JobRegistry) -> None:
    """The task domain's job kind: one step of a task's state machine."""
    jobs.add(TASK_JOB, run_task, on_crash=crash_writes)
