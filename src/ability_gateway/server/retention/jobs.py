"""Retention (kind ``data.retention``): a job deletes quota counters of windows that are
over, expired console sessions and, with ``GATEWAY_RETENTION_DAYS`` set, finished tasks that
ended longer ago than that, with their call logs, callback attempts and media links, in
small batches (one short transaction each); it reschedules itself: at once while there is
more, else hourly. Usage rollups are kept (they are the history), and so is a task whose
callback is still being delivered. Media files go by their own rule
(``GATEWAY_MEDIA_RETENTION_DAYS``, ``media/jobs.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from ability_gateway.server.console.repository import forget_expired as forget_expired_sessions
from ability_gateway.server.retention import repository
from ability_gateway.server.runner import repository as job_repository
from ability_gateway.server.runner.queue import enqueue
from ability_gateway.server.runner.steps import JobRegistry, StepContext, StepResult

if TYPE_CHECKING:
    from ability_gateway.server.state import Services

RETENTION_JOB = "data.retention"
EVERY_SECONDS = 3600.0
BATCH = 200


def ensure_scheduled(conn: Connection) -> None:
    """One retention job in the queue (started with the runner)."""
    if not job_repository.has_unfinished(conn, RETENTION_JOB):
        enqueue(conn, RETENTION_JOB)


async def forget_old_data(ctx: StepContext[Services]) -> StepResult:
    days = ctx.gateway.settings.retention_days
    older_than_ms = int(days * 86_400_000)

    def batch(conn: Connection) -> tuple[int, int, int]:
        counters = repository.forget_old_quota_counters(conn)
        forget_expired_sessions(conn, BATCH)
        if days <= 0:  # tasks and logs are kept forever
            return 0, 0, counters
        return (
            repository.forget_old_tasks(conn, older_than_ms, BATCH),
            repository.forget_old_logs(conn, older_than_ms, BATCH),
            counters,
        )

    tasks, logs, counters = await ctx.gateway.db.run_write(batch)
    more = tasks == BATCH or logs == BATCH
    every = EVERY_SECONDS if days <= 0 else min(EVERY_SECONDS, days * 86_400 / 2)
    return StepResult(
        "queued",
        delay_s=0.0 if more else every,
        payload={"lastTasks": tasks, "lastLogs": logs, "lastQuotaCounters": counters},
    )


def register(jobs: JobRegistry) -> None:
    """Retention's job kind."""
    jobs.add(RETENTION_JOB, forget_old_data)
