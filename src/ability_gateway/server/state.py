"""What one gateway process holds for its lifetime, built in the app's lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ability_gateway.server.abilities.catalog import Catalog
from ability_gateway.server.auth.limits import RequestLimiter
from ability_gateway.server.auth.service import TokenCache
from ability_gateway.server.config import Settings
from ability_gateway.server.db import Database
from ability_gateway.server.egress import SafeClient
from ability_gateway.server.executors.registry import ExecutorRegistry
from ability_gateway.server.media.service import MediaService
from ability_gateway.server.tasks.cache import Flights
from ability_gateway.server.tasks.events import TaskEvents

if TYPE_CHECKING:
    from ability_gateway.server.runner.runner import Runner

T = TypeVar("T")


@dataclass(slots=True)
class GatewayState:
    settings: Settings
    db: Database
    catalog: Catalog
    executors: ExecutorRegistry
    token_cache: TokenCache
    callback_client: SafeClient
    limiter: RequestLimiter
    media: MediaService
    task_events: TaskEvents = field(default_factory=TaskEvents)
    flights: Flights = field(default_factory=Flights)
    # Set right after construction (the runner needs the state it belongs to).
    runner: Runner = field(default=None)  # type: ignore[assignment]
    inflight: set[asyncio.Task[Any]] = field(default_factory=set)

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
