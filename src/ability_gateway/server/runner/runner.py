"""The runner: claims due jobs, runs their steps under a lease, sweeps up after crashes.

One runs inside every ``serve`` process (and alone as ``ability-gateway worker``).
Each loop turn claims at most as many due jobs as it has free slots, runs each
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
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from ability_gateway.server.runner import repository
from ability_gateway.server.runner.repository import Lease
from ability_gateway.server.runner.steps import (
    StepContext,
    StepResult,
    crash_handler_for,
    step_for,
)

if TYPE_CHECKING:
    from ability_gateway.server.state import GatewayState

logger = logging.getLogger(__name__)


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Runner:
    def __init__(
        self,
        gateway: GatewayState,
        *,
        concurrency: int,
        poll_seconds: float,
        lease_seconds: float,
        sweep_seconds: float,
        max_crashes: int,
    ) -> None:
        self.gateway = gateway
        self.owner = runner_id()
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.lease_ms = int(lease_seconds * 1000)
        self.sweep_seconds = sweep_seconds
        self.max_crashes = max_crashes
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="runner-claim"),
            asyncio.create_task(self._sweep_loop(), name="runner-sweep"),
        ]
        logger.info("runner %s started (%d slots)", self.owner, self.concurrency)

    async def stop(self, grace_seconds: float) -> None:
        """Stop claiming; let running steps finish for ``grace_seconds``, then cancel them
        (their leases expire and another runner, or this one after a restart, resumes)."""
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
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

    @property
    def lease(self) -> tuple[str, int]:
        return self.owner, self.lease_ms

    # --- running one step ------------------------------------------------------------

    async def run_leased(
        self,
        lease: Lease,
        *,
        preloaded: Any = None,
    ) -> StepResult | None:
        """Run one step of a job we hold the lease of, and end it (fenced).

        Returns the step's result once committed, or None when the lease was lost
        (the result was dropped).
        """
        fn = step_for(lease.kind)
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
                        self.gateway.db.run_write(
                            lambda conn: repository.release(conn, lease.id, lease.token)
                        )
                    )
                raise
        finally:
            timer.cancel()
            for beat in beats:
                beat.cancel()
        try:
            committed = await self.gateway.db.run_write(
                lambda conn: self._finish(conn, lease, result)
            )
        except Exception as exc:
            # The step's own writes failed (a bug, or data the database refuses): record that
            # instead, so the job is retried and, after max_crashes, its task fails visibly.
            logger.exception("job %s: finishing write failed", lease.id)
            result = self._crash_result(lease, f"recording the step failed: {type(exc).__name__}")
            committed = await self.gateway.db.run_write(
                lambda conn: self._finish(conn, lease, result)
            )
        if not committed:
            logger.info("job %s: lease lost before finishing; result dropped", lease.id)
            return None
        if result.touched_task:
            self.gateway.task_events.notify(result.touched_task)
        if result.state == "queued":
            self.wake_at(result.delay_s)
        return result

    async def _call(self, fn: Any, lease: Lease, preloaded: Any) -> StepResult:
        if fn is None:
            return StepResult("failed", error=f"no step registered for job kind {lease.kind!r}")
        try:
            result: StepResult = await fn(StepContext(self.gateway, lease, preloaded))
            return result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("job %s (%s): step raised", lease.id, lease.kind)
            return self._crash_result(lease, f"{type(exc).__name__}: {exc}")

    def _crash_result(self, lease: Lease, reason: str) -> StepResult:
        if lease.crash_count + 1 >= self.max_crashes:
            handler = crash_handler_for(lease.kind)
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
                alive = await self.gateway.db.run_write(
                    lambda conn: repository.heartbeat(conn, lease.id, lease.token, self.lease_ms)
                )
            except Exception:
                if loop.time() - renewed >= self.lease_ms / 1000:
                    # The lease has run out: another runner may take the job; stop ours.
                    logger.error("job %s: lease expired while heartbeats failed", lease.id)
                    step_task.cancel()
                    return False
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
            free = self.concurrency - len(self._running)
            if free > 0:
                token = self.new_token()
                try:
                    leases = await self.gateway.db.run_write(
                        partial(
                            repository.claim,
                            owner=self.owner,
                            token=token,
                            ttl_ms=self.lease_ms,
                            limit=free,
                        )
                    )
                except Exception:
                    logger.exception("claiming jobs failed; retrying")
                    leases = []
                for lease in leases:
                    task = asyncio.create_task(self.run_leased(lease), name=f"job-{lease.id}")
                    self._running.add(task)
                    task.add_done_callback(self._step_done)
                if len(leases) == free:
                    continue  # there may be more due right now
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)

    def _step_done(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("job step failed outside its step", exc_info=task.exception())
        self.wake()  # a slot is free

    async def _sweep_loop(self) -> None:
        while True:
            try:
                swept = await self.gateway.db.run_write(self._sweep)
                for task_id in swept:
                    self.gateway.task_events.notify(task_id)
                if swept:
                    self.wake()
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
                    handler = crash_handler_for(row.kind)
                    if handler is not None:
                        handler(conn, row.task_id, row.payload or {}, reason)
                    if row.task_id:
                        touched.append(row.task_id)
            elif repository.requeue_crashed(conn, row.id, row.lease_owner) and row.task_id:
                touched.append(row.task_id)
        return touched
