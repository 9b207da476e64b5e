"""Waiting for a task: the schedule of ``wait_for_task`` and the end of ``invoke_and_wait``.

This module owns :class:`_Poll` (growing pauses, ``Retry-After`` hints, 429s and blips
against one overall deadline), which failures while polling are worth another poll, and how
a task that ended becomes what ``invoke_and_wait`` returns (the result, shaped like a 200
answer) or raises (the error a synchronous invoke of it would have raised). Both clients
use it; only their sleeping differs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ability_gateway._errors import (
    APIConnectionError,
    GatewayError,
    GatewayTimeoutError,
    RateLimitError,
    error_from_body,
)
from ability_gateway._models import InvokeResult, Task

POLL_GROWTH = 1.5
"""wait_for_task's pause grows by this factor per poll, from poll_interval to max_interval."""


def _task_error(task: Task) -> GatewayError:
    """What a sync invoke raises for this ended task (the gateway's raise_for_task)."""
    error = task.error_payload or {}
    code = error.get("code")
    status_code = {"timeout": 504, "canceled": 409}.get(task.status, 502)
    body = {
        # A failed task keeps Coze's code (e.g. 720701013) when it had one.
        "code": code if task.status == "failed" and isinstance(code, int) else status_code,
        "message": str(error.get("message") or f"The task {task.status}"),
        "requestId": task.request_id,
        "taskId": task.id,
        "logId": task.log_id,
        "debugUrl": error.get("debugUrl"),
        "status": task.status,
    }
    return error_from_body(status_code, body)


def _result_from_task(task: Task, accepted: InvokeResult) -> InvokeResult:
    """The finished task in the shape of a 200 answer (``duration_ms`` is not known)."""
    payload = dict(task.result_payload or {})
    metadata = payload.get("metadata") or {**accepted.metadata, "taskId": task.id}
    return InvokeResult.model_validate(
        {
            **payload,
            "abilityId": task.ability_id,
            "provider": accepted.provider,
            "status": task.status,
            "requestId": task.request_id,
            "logId": task.log_id,
            "durationMs": None,
            "metadata": metadata,
        }
    )


@dataclass
class _Poll:
    """wait_for_task's schedule: growing pauses, Retry-After hints, one overall deadline."""

    task_id: str
    timeout: float
    delay: float
    max_interval: float
    deadline: float

    @classmethod
    def start(
        cls, task_id: str, timeout: float, poll_interval: float, max_interval: float
    ) -> _Poll:
        if timeout < 0 or poll_interval <= 0 or max_interval <= 0:
            raise ValueError("timeout must be >= 0 and the intervals > 0")
        return cls(
            task_id,
            timeout,
            min(poll_interval, max_interval),
            max_interval,
            time.monotonic() + timeout,
        )

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def pause_after(self, task: Task, hint: float | None) -> float:
        """The pause before the next poll, or raise if the deadline has passed."""
        remaining = self.remaining()
        if remaining <= 0:
            raise GatewayTimeoutError(
                f"Task {self.task_id} is still {task.status} after {self.timeout:g} s "
                "(it goes on; wait again or cancel it)",
                task_id=self.task_id,
                log_id=task.log_id,
                status=task.status,
                request_id=task.request_id,
            )
        pause = min(hint if hint is not None else self.delay, self.max_interval, remaining)
        self.delay = min(self.delay * POLL_GROWTH, self.max_interval)
        return pause

    def pause_after_rate_limit(self, error: RateLimitError) -> float:
        """A 429 while polling: wait as told if the deadline allows, else raise it."""
        pause = error.retry_after if error.retry_after is not None else self.delay
        if pause > self.remaining():
            raise error
        return pause

    def pause_after_blip(self, error: Exception) -> float:
        """A connection error or 5xx while polling: try again later if time remains."""
        pause = min(self.delay, self.max_interval)
        if pause >= self.remaining():
            raise error
        self.delay = min(self.delay * POLL_GROWTH, self.max_interval)
        return pause


def _transient(error: Exception) -> bool:
    """Worth polling again: no connection, or the gateway itself in trouble (5xx)."""
    if isinstance(error, APIConnectionError):
        return True
    status = getattr(error, "status_code", None)
    return isinstance(status, int) and status >= 500
