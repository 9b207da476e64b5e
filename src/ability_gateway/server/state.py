"""What one gateway process holds for its lifetime, built in the app's lifespan.

    Services (frozen: settings, db, catalog, executors, callback client, media, task events,
       │      metrics)
       │  handed to every job step as ``ctx.gateway``, through
       ▼
    Runner (gets a narrow ``RunnerDeps``: db, the services, a notify hook, its settings)
       │
       ▼
    GatewayState = Services + the runner + what only request handlers use
                   (token cache, rate limiter, single-flight, in-flight work)

The runner never sees ``GatewayState`` (``runner/`` does not import this module), so it is
built first and the state is complete when constructed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ability_gateway.server.abilities.catalog import Catalog
from ability_gateway.server.auth.last_used import LastUsed
from ability_gateway.server.auth.limits import RequestLimiter
from ability_gateway.server.auth.service import TokenCache
from ability_gateway.server.config import Settings
from ability_gateway.server.console.sessions import Sessions
from ability_gateway.server.db import Database
from ability_gateway.server.egress import SafeClient
from ability_gateway.server.executors.registry import ExecutorRegistry
from ability_gateway.server.media.service import MediaService
from ability_gateway.server.metrics.registry import Metrics
from ability_gateway.server.runner.runner import Runner
from ability_gateway.server.tasks.cache import Flights
from ability_gateway.server.tasks.events import TaskEvents

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Services:
    """The long-lived parts of a process that job steps use (``StepContext[Services]``)."""

    settings: Settings
    db: Database
    catalog: Catalog
    executors: ExecutorRegistry
    callback_client: SafeClient
    media: MediaService
    task_events: TaskEvents
    # What every part records (metrics/registry.py); the default records nothing.
    metrics: Metrics = field(default_factory=Metrics)


@dataclass(slots=True)
class GatewayState:
    services: Services
    runner: Runner
    token_cache: TokenCache
    limiter: RequestLimiter
    sessions: Sessions  # console sign-ins (console/sessions.py)
    flights: Flights = field(default_factory=Flights)
    last_used: LastUsed = field(default_factory=LastUsed)
    inflight: set[asyncio.Task[Any]] = field(default_factory=set)

    # The services, by their own names (request handlers read ``gateway.db`` and so on).
    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def db(self) -> Database:
        return self.services.db

    @property
    def catalog(self) -> Catalog:
        return self.services.catalog

    @property
    def executors(self) -> ExecutorRegistry:
        return self.services.executors

    @property
    def callback_client(self) -> SafeClient:
        return self.services.callback_client

    @property
    def media(self) -> MediaService:
        return self.services.media

    @property
    def task_events(self) -> TaskEvents:
        return self.services.task_events

    @property
    def metrics(self) -> Metrics:
        return self.services.metrics

    def track(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` as a task that outlives its request and is awaited at shutdown."""
        task = asyncio.ensure_future(coro)
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        return task

    async def drain(self, timeout: float) -> None:
        """Let in-flight work finish (graceful shutdown) for up to ``timeout`` seconds, then
        cancel the rest: their jobs go back to the queue for a runner to finish."""
        if self.inflight:
            _, pending = await asyncio.wait(set(self.inflight), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=10)
