"""Media retention (kind ``media.retention``): a job that deletes media unused for
``GATEWAY_MEDIA_RETENTION_DAYS`` and reschedules itself (hourly, or every half retention
period when that is shorter)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from ability_gateway.server.media import repository as media_repository
from ability_gateway.server.runner import repository as job_repository
from ability_gateway.server.runner.queue import enqueue
from ability_gateway.server.runner.steps import JobRegistry, StepContext, StepResult

if TYPE_CHECKING:
    from ability_gateway.server.state import Services

RETENTION_JOB = "media.retention"
EVERY_SECONDS = 3600.0
BATCH = 500


def ensure_scheduled(conn: Connection) -> None:
    """One retention job in the queue (started with the runner; duplicates would be harmless)."""
    if not job_repository.has_unfinished(conn, RETENTION_JOB):
        enqueue(conn, RETENTION_JOB)


async def remove_unused_media(ctx: StepContext[Services]) -> StepResult:
    gateway = ctx.gateway
    days = gateway.settings.media_retention_days
    if days <= 0:
        return StepResult("done")
    cutoff_ms = int(days * 86_400_000)
    async with gateway.db.read() as conn:
        keys = await media_repository.unused_since(conn, cutoff_ms, BATCH)
    removed = []
    for key in keys:
        await gateway.media.storage.delete(key)
        removed.append(key)
    more = len(keys) == BATCH
    # Hourly; more often when the retention itself is shorter than two hours.
    every = min(EVERY_SECONDS, days * 86_400 / 2)
    return StepResult(
        "queued",
        delay_s=0.0 if more else every,
        writes=partial(media_repository.forget_unused, keys=removed, cutoff_ms=cutoff_ms),
        payload={"lastRemoved": len(removed)},
    )


def register(jobs: JobRegistry) -> None:
    """The media domain's job kind: retention."""
    jobs.add(RETENTION_JOB, remove_unused_media)
