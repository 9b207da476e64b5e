"""Media retention (kind ``media.retention``): a job that deletes media unused for
``GATEWAY_MEDIA_RETENTION_DAYS`` and reschedules itself (hourly, or every half retention
period when that is shorter)."""

from __future__ import annotations

from functools import partial

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import jobs, media
from ability_gateway.server.runner import repository as job_repository
from ability_gateway.server.runner.steps import StepContext, StepResult, step

RETENTION_JOB = "media.retention"
EVERY_SECONDS = 3600.0
BATCH = 500


def ensure_scheduled(conn: Connection) -> None:
    """One retention job in the queue (started with the runner; duplicates would be harmless)."""
    active = conn.execute(
        select(jobs.c.id).where(
            jobs.c.kind == RETENTION_JOB, jobs.c.state.in_(("queued", "running"))
        )
    ).first()
    if active is None:
        job_repository.insert_job(conn, kind=RETENTION_JOB, task_id=None, payload={})


@step(RETENTION_JOB)
async def remove_unused_media(ctx: StepContext) -> StepResult:
    gateway = ctx.gateway
    days = gateway.settings.media_retention_days
    if days <= 0:
        return StepResult("done")
    cutoff_ms = int(days * 86_400_000)
    async with gateway.db.read() as conn:
        rows = (
            await conn.execute(
                select(media.c.key)
                .where(media.c.last_used_at < db_now_ms() - cutoff_ms)
                .order_by(media.c.last_used_at)
                .limit(BATCH)
            )
        ).all()
    removed = []
    for (key,) in rows:
        await gateway.media.storage.delete(key)
        removed.append(key)

    def forget(conn: Connection, keys: list[str]) -> None:
        if keys:
            # Only rows still unused: content reused meanwhile keeps its row (and is stored
            # again by its next use, which finds no object).
            conn.execute(
                delete(media).where(
                    media.c.key.in_(keys), media.c.last_used_at < db_now_ms() - cutoff_ms
                )
            )

    more = len(rows) == BATCH
    # Hourly; more often when the retention itself is shorter than two hours.
    every = min(EVERY_SECONDS, days * 86_400 / 2)
    return StepResult(
        "queued",
        delay_s=0.0 if more else every,
        writes=partial(forget, keys=removed),
        payload={"lastRemoved": len(removed)},
    )
