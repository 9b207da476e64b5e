"""Job steps and their registry: ``jobs.add("task.run", run_task)`` names the function that
runs one step of a job of that kind. A step is short: it does its work and says what happens
next."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy.engine import Connection

from ability_gateway.server.runner.repository import Lease

ServicesT = TypeVar("ServicesT")


@dataclass(frozen=True, slots=True)
class StepContext(Generic[ServicesT]):
    """What a step is handed. ``gateway``: the services the lifespan gave the runner
    (``RunnerDeps.services``); the runner never looks inside, the step's module names their
    type (``StepContext[Services]``). ``owner``: the id of the runner holding the lease."""

    gateway: ServicesT
    lease: Lease
    owner: str
    # What the caller already knows (the request handler running a first step inline), so
    # the step need not read it back from the database. Opaque here: the step's module
    # names its type and checks it (``isinstance``).
    preloaded: object = None


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
    same ``concurrency_key`` (set at enqueue) run at once, on every node together;
    ``key_caps``: a cap of its own for some keys (e.g. an executor's account limit). The
    claim statement itself passes over a key at its cap, and so does an enqueue that asks
    for the lease.
    """

    slots: int | None = None
    per_key_cap: int | None = None
    key_caps: Mapping[str, int] = field(default_factory=dict)

    def cap_for(self, key: str | None) -> int | None:
        if key is None:
            return None
        return self.key_caps.get(key, self.per_key_cap)

    def claim_caps(self, kind: str) -> tuple[tuple[str, str | None, int], ...]:
        """The (kind, key, cap) triples of a claim slice."""
        caps: list[tuple[str, str | None, int]] = [
            (kind, key, cap) for key, cap in sorted(self.key_caps.items())
        ]
        if self.per_key_cap is not None:
            caps.append((kind, None, self.per_key_cap))
        return tuple(caps)


StepFn = Callable[[StepContext[Any]], Awaitable[StepResult]]
# Called in the sweeper's transaction when a job of the kind crashed its runner too often:
# (connection, task id, job payload, reason). It makes the failure visible.
CrashFn = Callable[[Connection, str | None, dict[str, Any], str], None]


class JobRegistry:
    """The job kinds a runner can run, each with its step and crash handler.

    Built in the lifespan (one per process); each domain adds its kinds with one explicit
    call (``tasks.steps.register(jobs)``), so nothing registers by being imported.
    """

    def __init__(self) -> None:
        self._steps: dict[str, StepFn] = {}
        self._on_crash: dict[str, CrashFn] = {}

    def add(self, kind: str, fn: StepFn, *, on_crash: CrashFn | None = None) -> None:
        if kind in self._steps and self._steps[kind] is not fn:
            raise ValueError(f"two steps for job kind {kind!r}")
        self._steps[kind] = fn
        if on_crash is not None:
            self._on_crash[kind] = on_crash

    def step_for(self, kind: str) -> StepFn | None:
        return self._steps.get(kind)

    def crash_handler_for(self, kind: str) -> CrashFn | None:
        return self._on_crash.get(kind)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._steps)
