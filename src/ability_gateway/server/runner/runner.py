"""The runner: claims due jobs, runs their steps under a lease, sweeps up after crashes.

One runs inside every ``serve`` process (and alone as ``ability-gateway worker``).
Slots come in budgets: a shared one, and one of its own for each kind whose policy asks
for it (callback deliveries), so slow jobs of one kind cannot take every slot. Each loop
turn claims, in one statement, at most as many due jobs per budget as it has free, runs each
step as an asyncio task with a heartbeat that renews its lease every third of
the lease time, and ends it with a fenced write. A heartbeat that finds the lease
gone (the job was canceled, or the lease expired and another runner took it)
cancels the step. The sweeper returns expired leases to the queue; a job whose
runner crashed ``max_crashes`` times fails, and so does its task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.engine import Connection

from ability_gateway.server.db import Database
from ability_gateway.server.errors import DatabaseUnavailable
from ability_gateway.server.runner import repository
from ability_gateway.server.runner.claim import ClaimSlice, claim_slices
from ability_gateway.server.runner.queue import LeaseRequest
from ability_gateway.server.runner.repository import Lease
from ability_gateway.server.runner.steps import (
    JobRegistry,
    KindPolicy,
    StepContext,
    StepFn,
    StepResult,
)

logger = logging.getLogger(__name__)


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(slots=True)
class _Budget:
    """Slots for the steps of some kinds: ``kinds`` (or, shared, every kind but those)."""

    kinds: tuple[str, ...]
    shared: bool
    slots: int
    key_caps: tuple[tuple[str, str | None, int], ...]
    running: set[asyncio.Task[Any]] = field(default_factory=set)

    def slice(self) -> ClaimSlice | None:
        """What to claim for the free slots (None: none free)."""
        free = self.slots - len(self.running)
        if free <= 0:
            return None
        return ClaimSlice(self.kinds, self.shared, free, self.key_caps)


def _budgets(concurrency: int, policies: Mapping[str, KindPolicy]) -> list[_Budget]:
    """The shared budget first, then one per kind with slots of its own."""
    own = sorted(kind for kind, policy in policies.items() if policy.slots is not None)
    shared = tuple(
        cap
        for kind in sorted(policies)
        if kind not in own
        for cap in policies[kind].claim_caps(kind)
    )
    budgets = [_Budget(tuple(own), True, concurrency, shared)]
    for kind in own:
        slots = policies[kind].slots
        assert slots is not None
        budgets.append(_Budget((kind,), False, slots, policies[kind].claim_caps(kind)))
    return budgets


@dataclass(frozen=True, slots=True)
class RunnerDeps:
    """What a runner needs from its process, built in the lifespan.

    ``services`` is handed to every step as ``ctx.gateway`` and is opaque here: the queue
    knows no domain, each step's module names the type it expects. ``notify_task`` wakes
    the waiters on a task whose state a step (or the sweeper) changed. ``policies``: how
    jobs of some kinds are claimed (from their domains).
    """

    db: Database
    services: object
    notify_task: Callable[[str], None]
    concurrency: int
    poll_seconds: float
    lease_seconds: float
    sweep_seconds: float
    max_crashes: int
    jobs: JobRegistry
    policies: Mapping[str, KindPolicy] = field(default_factory=dict)


class Runner:
    def __init__(self, deps: RunnerDeps) -> None:
        self.deps = deps
        self.db = deps.db
        self.owner = runner_id()
        self.concurrency = deps.concurrency
        self.poll_seconds = deps.poll_seconds
        self.lease_ms = int(deps.lease_seconds * 1000)
        self.sweep_seconds = deps.sweep_seconds
        self.max_crashes = deps.max_crashes
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._budgets = _budgets(deps.concurrency, deps.policies)
        self._budget_of = {kind: b for b in self._budgets[1:] for kind in b.kinds}

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="runner-claim"),
            asyncio.create_task(self._sweep_loop(), name="runner-sweep"),
        ]
        logger.info(
            "runner %s started (%s slots)",
            self.owner,
            " + ".join(
                f"{b.slots}" if b.shared else f"{b.slots} for {b.kinds[0]}" for b in self._budgets
            ),
        )

    async def stop(self, grace_seconds: float) -> None:
        """Stop claiming; let running steps finish for ``grace_seconds``, then cancel them
        (their leases expire and another runner, or this one after a restart, resumes)."""
        for loop in self._loops:
            loop.cancel()
        if self._loops:
            # Bounded: a loop canceled inside a database call must not hold the shutdown.
            _, stuck = await asyncio.wait(set(self._loops), timeout=5)
            if stuck:
                logger.warning("runner: %d loops did not stop within 5 s", len(stuck))
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

    def wake(self) -> None:
        """Something was enqueued here: claim now instead of at the next poll."""
        self._wake.set()

    def new_token(self) -> str:
        return secrets.token_hex(16)

    def lease_request(self, kind: str, key: str | None = None) -> LeaseRequest:
        """What an enqueue that runs the job's first step here asks for: a new lease of ours,
        within the kind's cap for ``key``."""
        policy = self.deps.policies.get(kind)
        cap = None if policy is None else policy.cap_for(key)
        return LeaseRequest(self.owner, self.new_token(), self.lease_ms, cap)

    # --- running one step ------------------------------------------------------------

    async def run_leased(self, lease: Lease, *, preloaded: object = None) -> StepResult | None:
        """Run one step of a job we hold the lease of, and end it (fenced).

        Returns the step's result once committed, or None when the lease was lost
        (the result was dropped).
        """
        fn = self.deps.jobs.step_for(lease.kind)
        step_task = asyncio.ensure_future(self._call(fn, lease, preloaded))
        # Most steps end well within a third of the lease: the heartbeat task only starts
        # if the step is still running then.
        beats: list[asyncio.Task[bool]] = []
        timer = asyncio.get_running_loop().call_later(
            self.lease_ms / 3000,
            lambda: beats.append(asyncio.ensure_future(self._heartbeat(lease, step_task))),
        )
        try:
            try:
                result = await step_task
            except asyncio.CancelledError:
                if beats and beats[0].done() and beats[0].result() is False:
                    logger.info("job %s: lease lost, step abandoned", lease.id)
                    return None
                # A graceful stop: hand the job back now, without counting a crash.
                step_task.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self.db.run_write(
                            lambda conn: repository.release(conn, lease.id, lease.token)
                        )
                    )
                raise
        finally:
            timer.cancel()
            for beat in beats:
                beat.cancel()
        try:
            committed = await self.db.run_write(lambda conn: self._finish(conn, lease, result))
        except DatabaseUnavailable:
            committed = await self._finish_when_back(lease, result)
        except Exception as exc:
            # The step's own writes failed (a bug, or data the database refuses): record that
            # instead, so the job is retried and, after max_crashes, its task fails visibly.
            logger.exception("job %s: finishing write failed", lease.id)
            result = self._crash_result(lease, f"recording the step failed: {type(exc).__name__}")
            committed = await self.db.run_write(lambda conn: self._finish(conn, lease, result))
        if not committed:
            logger.info("job %s: lease lost before finishing; result dropped", lease.id)
            return None
        if result.touched_task:
            self.deps.notify_task(result.touched_task)
        if result.state == "queued":
            self.wake_at(result.delay_s)
        return result

    async def _finish_when_back(self, lease: Lease, result: StepResult) -> bool:
        """The database went away as the step ended (an outage, logged once by it): keep
        trying to record the result for a lease's time (the write is fenced), then drop it
        (the job runs again once its lease has expired)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.lease_ms / 1000
        while loop.time() < give_up:
            await asyncio.sleep(self.db.retry_pause(self.poll_seconds))
            try:
                return await self.db.run_write(lambda conn: self._finish(conn, lease, result))
            except DatabaseUnavailable:
                continue
        return False

    async def _call(self, fn: StepFn | None, lease: Lease, preloaded: object) -> StepResult:
        if fn is None:
            return StepResult("failed", error=f"no step registered for job kind {lease.kind!r}")
        try:
            result: StepResult = await fn(
                StepContext(self.deps.services, lease, self.owner, preloaded)
            )
            return result
        except asyncio.CancelledError:
            raise
        except DatabaseUnavailable:
            # Not the step's fault: run it again soon, without counting a crash.
            return StepResult("queued", delay_s=1.0, error="the database was unavailable")
        except Exception as exc:
            logger.exception("job %s (%s): step raised", lease.id, lease.kind)
            return self._crash_result(lease, f"{type(exc).__name__}: {exc}")

    def _crash_result(self, lease: Lease, reason: str) -> StepResult:
        if lease.crash_count + 1 >= self.max_crashes:
            handler = self.deps.jobs.crash_handler_for(lease.kind)
            return StepResult(
                "failed",
                error=reason,
                writes=None
                if handler is None
                else lambda conn: handler(conn, lease.task_id, lease.payload, reason),
                touched_task=lease.task_id,
                extra={"crashed": True},
            )
        return StepResult("queued", delay_s=1.0, error=reason, extra={"crashed": True})

    def _finish(self, conn: Connection, lease: Lease, result: StepResult) -> bool:
        ok = repository.finish(
            conn,
            lease.id,
            lease.token,
            state=result.state,
            payload=result.payload,
            delay_ms=int(result.delay_s * 1000),
            error=result.error,
            crashed=bool(result.extra.get("crashed")),
        )
        if ok and result.writes is not None:
            result.writes(conn)
        return ok

    async def _heartbeat(self, lease: Lease, step_task: asyncio.Future[Any]) -> bool:
        loop = asyncio.get_running_loop()
        interval = self.lease_ms / 3000
        # The lease was last renewed at most a third of its time ago (claim or timer start).
        renewed = loop.time() - interval
        while True:
            try:
                alive = await self.db.run_write(
                    lambda conn: repository.heartbeat(conn, lease.id, lease.token, self.lease_ms)
                )
            except Exception as exc:
                if loop.time() - renewed >= self.lease_ms / 1000:
                    # The lease has run out: another runner may take the job; stop ours.
                    logger.error("job %s: lease expired while heartbeats failed", lease.id)
                    step_task.cancel()
                    return False
                if not isinstance(exc, DatabaseUnavailable):  # an outage is logged once
                    logger.warning("job %s: heartbeat failed; retrying", lease.id, exc_info=True)
                await asyncio.sleep(min(interval, 1.0))
                continue
            renewed = loop.time()
            if not alive:
                step_task.cancel()
                return False
            await asyncio.sleep(interval)

    def wake_at(self, delay_s: float) -> None:
        if delay_s <= 0:
            self.wake()
        elif delay_s < self.poll_seconds:
            asyncio.get_running_loop().call_later(delay_s, self.wake)

    # --- loops -----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            wanted = [(b, part) for b in self._budgets if (part := b.slice()) is not None]
            if wanted:
                token = self.new_token()
                held_back = 0
                try:
                    claimed = await self.db.run_write(
                        partial(
                            claim_slices,
                            owner=self.owner,
                            token=token,
                            ttl_ms=self.lease_ms,
                            slices=[part for _, part in wanted],
                        )
                    )
                    leases, held_back = claimed.leases, claimed.held_back
                    if claimed.contended:  # another node was claiming capped kinds
                        self.wake_at(0.02)
                except DatabaseUnavailable:
                    # An outage: the database logs it once; look again less and less often.
                    await asyncio.sleep(self.db.retry_pause(self.poll_seconds))
                    continue
                except Exception:
                    logger.exception("claiming jobs failed; retrying")
                    leases = []
                for lease in leases:
                    budget = self._budget_of.get(lease.kind, self._budgets[0])
                    task = asyncio.create_task(self.run_leased(lease), name=f"job-{lease.id}")
                    self._running.add(task)
                    budget.running.add(task)
                    task.add_done_callback(partial(self._step_done, budget))
                if held_back or any(b.slice() is None for b, _ in wanted):
                    continue  # there may be more due right now
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)

    def _step_done(self, budget: _Budget, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        budget.running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("job step failed outside its step", exc_info=task.exception())
        self.wake()  # a slot is free

    async def _sweep_loop(self) -> None:
        while True:
            try:
                swept = await self.db.run_write(self._sweep)
                for task_id in swept:
                    self.deps.notify_task(task_id)
                if swept:
                    self.wake()
            except DatabaseUnavailable:
                pass  # an outage, logged once by the database
            except Exception:
                logger.exception("sweeping expired leases failed; retrying")
            await asyncio.sleep(self.sweep_seconds)

    def _sweep(self, conn: Connection) -> list[str]:
        touched: list[str] = []
        for row in repository.expired(conn, limit=100):
            if row.crash_count + 1 >= self.max_crashes:
                reason = (
                    f"the job's runner crashed {row.crash_count + 1} times "
                    f"(last: {row.lease_owner}); giving up"
                )
                if repository.fail_crashed(conn, row.id, row.lease_owner, reason):
                    handler = self.deps.jobs.crash_handler_for(row.kind)
                    if handler is not None:
                        handler(conn, row.task_id, row.payload, reason)
                    if row.task_id:
                        touched.append(row.task_id)
            elif repository.requeue_crashed(conn, row.id, row.lease_owner) and row.task_id:
                touched.append(row.task_id)
        return touched
