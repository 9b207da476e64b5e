"""The registry of job steps: ``@step("task.run")`` names the function that runs one step of
a job of that kind. A step is short: it does its work and says what happens next."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.engine import Connection

from ability_gateway.server.runner.repository import Lease

if TYPE_CHECKING:
    from ability_gateway.server.state import GatewayState


@dataclass(slots=True)
class StepContext:
    gateway: GatewayState
    lease: Lease
    # What the caller already knows (the request handler running a first step inline),
    # so the step need not read it back from the database.
    preloaded: Any = None


@dataclass(slots=True)
class StepResult:
    """What a step decided. ``writes`` run in the transaction that ends the step, and only
    if the lease still holds; they must only touch the database (they may run twice)."""

    state: Literal["done", "failed", "canceled", "queued"]
    delay_s: float = 0.0
    payload: dict[str, Any] | None = None
    writes: Callable[[Connection], None] | None = None
    error: str | None = None
    # Tasks whose state the writes change: waiters on them are woken after the commit.
    touched_task: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KindPolicy:
    """How the runner claims jobs of one kind (supplied by the kind's domain at start-up).

    ``slots``: a slot budget of the kind's own on each runner, apart from the shared one
    (None: the kind shares it). ``per_key_cap``: at most this many jobs of the kind with the
    same ``concurrency_key`` (set at enqueue) run at once, on every node together; the claim
    statement itself passes over a key at its cap.
    """

    slots: int | None = None
    per_key_cap: int | None = None


StepFn = Callable[[StepContext], Awaitable[StepResult]]
# Called in the sweeper's transaction when a job of the kind crashed its runner too often:
# (connection, task id, job payload, reason). It makes the failure visible.
CrashFn = Callable[[Connection, str | None, dict[str, Any], str], None]
_STEPS: dict[str, StepFn] = {}
_ON_CRASH: dict[str, CrashFn] = {}


def step(kind: str, *, on_crash: CrashFn | None = None) -> Callable[[StepFn], StepFn]:
    def register(fn: StepFn) -> StepFn:
        if kind in _STEPS and _STEPS[kind] is not fn:
            raise ValueError(f"two steps for job kind {kind!r}")
        _STEPS[kind] = fn
        if on_crash is not None:
            _ON_CRASH[kind] = on_crash
        return fn

    return register


def step_for(kind: str) -> StepFn | None:
    return _STEPS.get(kind)


def crash_handler_for(kind: str) -> CrashFn | None:
    return _ON_CRASH.get(kind)
