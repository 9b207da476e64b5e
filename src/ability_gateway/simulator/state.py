"""The simulator's process-wide state: :class:`SimulatorState`, kept on the aiohttp app.

This module owns what outlives a request: the run records, the external jobs and their
notifier, the source-image reader, the execute-id factory, the seeded fault draws, the
run-history throttle count, which Bearer tokens are accepted (static ones and OAuth-issued
ones) and whose they are, the JWT audiences, and the background tasks of async runs, with
their start and stop. Route handlers reach it as ``request.app[SIMULATOR]``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from yarl import URL

from ability_gateway.simulator.config import SimulatorConfig
from ability_gateway.simulator.jobs import JobRegistry
from ability_gateway.simulator.notices import Notifier
from ability_gateway.simulator.oauth import COZE_AUDIENCES, OAuthServer
from ability_gateway.simulator.protocol import ExecuteIdFactory, connector_uid
from ability_gateway.simulator.runs import RunStore
from ability_gateway.simulator.sources import SourceImages

__all__ = ["SIMULATOR", "SimulatorState"]


class SimulatorState:
    """The process-wide state behind the routes: runs, jobs, fault draws, background runs."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.latency_seconds = config.latency_ms / 1000.0
        self.runs = RunStore()
        self.notifier = (
            Notifier(config.notify_url, config.notify_secret)
            if config.notify_url and config.notify_secret
            else None
        )
        self.jobs = JobRegistry(
            config.job_seconds,
            fail_rate=config.job_fail_rate,
            seed=config.seed,
            on_create=self.notifier.schedule if self.notifier else None,
        )
        self.sources = SourceImages(allow_remote=config.allow_remote_images)
        self.execute_ids = ExecuteIdFactory()
        self.public_base = config.public_url.rstrip("/") if config.public_url else None
        self.public_origin = str(URL(config.public_url).origin()) if config.public_url else None
        self._faults = random.Random(config.seed)
        # Coze reports the token owner as connector_uid when ext.user_id is absent; derive a stable
        # 16-digit "user id" per accepted token.
        self._token_uids = {token: connector_uid(token) for token in config.tokens}
        self.oauth = OAuthServer(config.oauth_apps)
        self._own_netloc = urlsplit(config.public_url).netloc if config.public_url else None
        self._background: set[asyncio.Task[None]] = set()
        self._history_requests = 0

    def throttled(self) -> bool:
        """Count a run-history request; ``True`` if it is one the throttle knob rejects."""
        if not self.config.throttle_every:
            return False
        self._history_requests += 1
        return self._history_requests % self.config.throttle_every == 0

    def base_url(self, request: web.Request) -> str:
        """Where returned file URLs point: ``public_url`` or the request's origin."""
        return self.public_base or str(request.url.origin())

    def owner_of(self, request: web.Request) -> str | None:
        """The connector uid of the request's Bearer token, or ``None`` if it is not accepted."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        uid = self._token_uids.get(token)
        return uid if uid is not None else self.oauth.owner_of(token)

    def audiences(self, request: web.Request) -> list[str]:
        """The ``aud`` values a JWT may carry: the cloud hosts and this simulator's host:port."""
        own = [request.host, self._own_netloc]
        return [*COZE_AUDIENCES, *(netloc for netloc in own if netloc)]

    def draw_failure(self) -> bool:
        return self._faults.random() < self.config.fail_rate

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # Keep a reference: the event loop holds tasks only weakly.
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> None:
        await self.sources.start()
        if self.notifier is not None:
            await self.notifier.start()

    async def stop(self) -> None:
        if self.notifier is not None:
            await self.notifier.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.sources.close()


SIMULATOR = web.AppKey("simulator", SimulatorState)
