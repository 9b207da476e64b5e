"""Building and tearing down one process's gateway state (shared by `serve` and `worker`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ability_gateway.server.abilities.catalog import Catalog
from ability_gateway.server.auth.limits import RequestLimiter
from ability_gateway.server.auth.service import TokenCache
from ability_gateway.server.callbacks import steps as callback_jobs
from ability_gateway.server.callbacks.sender import USER_AGENT
from ability_gateway.server.config import Settings
from ability_gateway.server.console.sessions import Sessions
from ability_gateway.server.db import Database
from ability_gateway.server.egress import SafeClient
from ability_gateway.server.executors.registry import ExecutorRegistry
from ability_gateway.server.media import jobs as media_jobs
from ability_gateway.server.media.service import MediaService
from ability_gateway.server.media.storage import Storage
from ability_gateway.server.metrics.registry import metrics_for
from ability_gateway.server.migrate import upgrade_to_head
from ability_gateway.server.retention import jobs as retention_jobs
from ability_gateway.server.runner.runner import Runner, RunnerDeps
from ability_gateway.server.runner.steps import JobRegistry
from ability_gateway.server.state import GatewayState, Services
from ability_gateway.server.tasks import steps as task_jobs
from ability_gateway.server.tasks.events import TaskEvents
from ability_gateway.server.tracing import configure as configure_tracing
from ability_gateway.server.tracing import shutdown as shutdown_tracing
from ability_gateway.server.usage.repository import ROLLUPS_OPTION

logger = logging.getLogger(__name__)


@asynccontextmanager
async def gateway_state(
    settings: Settings, catalog: Catalog, *, run_jobs: bool
) -> AsyncIterator[GatewayState]:
    configure_tracing(settings)  # on or off for this process: tracing/__init__.py
    db = Database(
        settings.resolved_database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        sqlite_busy_timeout_ms=int(settings.sqlite_busy_timeout_seconds * 1000),
        options={ROLLUPS_OPTION: settings.usage_rollups},
    )
    await upgrade_to_head(db)
    limiter = RequestLimiter(settings.redis_url)
    executors = ExecutorRegistry.from_settings(settings, limiter.limiter)
    metrics = metrics_for(
        settings.metrics_enabled, catalog, token_labels=settings.metrics_token_labels
    )
    metrics.watch_executors(executors.all())
    egress = SafeClient(settings.egress_networks, user_agent=USER_AGENT)
    storage = Storage.from_url(
        settings.resolved_storage_url,
        public_base_url=settings.storage_public_url
        if not settings.resolved_storage_url.startswith("file:")
        else settings.resolved_public_base_url,
        s3_endpoint=settings.s3_endpoint,
        s3_region=settings.s3_region,
        s3_access_key_id=settings.s3_access_key_id,
        s3_secret_access_key=settings.s3_secret_access_key.get_secret_value()
        if settings.s3_secret_access_key
        else None,
        presign_seconds=settings.presign_seconds,
    )
    services = Services(
        settings=settings,
        db=db,
        catalog=catalog,
        executors=executors,
        callback_client=egress,
        media=MediaService(
            storage,
            db,
            SafeClient(settings.egress_networks, user_agent=USER_AGENT, limit=32),
            max_download_bytes=settings.media_max_download_bytes,
            download_timeout=settings.media_download_timeout_seconds,
            metrics=metrics,
        ),
        task_events=TaskEvents(),
        metrics=metrics,
    )
    # Every job kind, named by its domain: nothing registers by being imported.
    jobs = JobRegistry()
    for domain in (task_jobs, callback_jobs, media_jobs, retention_jobs):
        domain.register(jobs)
    runner = Runner(
        RunnerDeps(
            db=db,
            services=services,
            notify_task=services.task_events.notify,
            concurrency=settings.runner_concurrency,
            poll_seconds=settings.runner_poll_seconds,
            lease_seconds=settings.lease_seconds,
            sweep_seconds=settings.sweep_seconds,
            max_crashes=settings.max_crashes,
            jobs=jobs,
            policies={
                **task_jobs.claim_policies(executors),
                **callback_jobs.claim_policies(settings),
            },
        )
    )
    state = GatewayState(
        services=services,
        runner=runner,
        token_cache=TokenCache(settings.auth_cache_seconds),
        limiter=limiter,
        sessions=Sessions(
            db,
            settings.console_session_secret.get_secret_value(),
            lifetime_s=settings.console_session_hours * 3600,
            cache_s=settings.auth_cache_seconds,
        ),
    )
    if run_jobs:
        if settings.media_retention_days > 0:
            await db.run_write(media_jobs.ensure_scheduled)
        await db.run_write(retention_jobs.ensure_scheduled)  # quota counters, at least
        state.runner.start()
    # Everything allocated so far lives as long as the process: keep it out of the
    # collector's generations, so collections stay short (they were the p99 spikes).
    gc.collect()
    gc.freeze()
    logger.info(
        "gateway ready: %d abilities, database %s, runner %s",
        len(catalog.all()),
        db.url.render_as_string(hide_password=True),
        state.runner.owner if run_jobs else "off",
    )
    try:
        yield state
    finally:
        await state.drain(timeout=settings.shutdown_grace_seconds)
        with contextlib.suppress(TimeoutError):  # bounded: the database may be gone
            await asyncio.wait_for(state.last_used.flush(db), timeout=5)
        if run_jobs:
            await state.runner.stop(grace_seconds=settings.shutdown_grace_seconds)
        await executors.close()
        metrics.close()
        await state.callback_client.close()
        await state.media.client.close()
        try:
            # Bounded too: closing a pooled connection waits on the server's answer.
            await asyncio.wait_for(db.dispose(), timeout=10)
        except TimeoutError:
            logger.warning("closing the database connections took over 10 s; left to exit")
        shutdown_tracing()  # the last spans exported
