"""A gateway served over real HTTP in-process (uvicorn on a free port), with its simulator."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import create_token
from ability_gateway.server.state import GatewayState
from tests.conftest import make_settings
from tests.contract import contract_hooks
from tests.support import NOTICE_SECRET, simulator_process

TERMINAL = {"succeeded", "failed", "canceled", "timeout"}


@dataclass
class Live:
    url: str
    sim_url: str
    client: httpx.AsyncClient
    headers: dict[str, str]
    state: GatewayState

    async def invoke(self, ability: str, payload: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.client.post(
            f"/api/abilities/{ability}/invoke",
            json=payload,
            headers={**self.headers, **{k.replace("_", "-"): v for k, v in headers.items()}},
        )

    async def task(self, task_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/ability_tasks/{task_id}", headers=self.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait(self, task_id: str, timeout: float = 30.0) -> tuple[dict[str, Any], list[str]]:
        """Poll until the task ends; also the statuses seen on the way."""
        seen: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            task = await self.task(task_id)
            if not seen or seen[-1] != task["status"]:
                seen.append(task["status"])
            if task["status"] in TERMINAL:
                return task, seen
            assert loop.time() < deadline, f"task {task_id} still {task['status']}"
            await asyncio.sleep(0.05)


LiveFactory = Callable[..., Any]


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveFactory]:
    """``async with live(*sim_args, notify=True, **settings)`` → a :class:`Live` gateway."""
    stack = contextlib.AsyncExitStack()

    @contextlib.asynccontextmanager
    async def start(*sim_args: str, notify: bool = True, **overrides: Any) -> AsyncIterator[Live]:
        # Bound here and handed to uvicorn: no other process can take the port in between.
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        url = f"http://127.0.0.1:{port}"
        args = list(sim_args)
        if notify:
            args += ["--notify-url", f"{url}/api/provider_callbacks/coze"]
            args += ["--notify-secret", NOTICE_SECRET]
        with simulator_process(*args) as sim_url:
            settings = make_settings(
                tmp_path / f"gw-{port}",
                sim_url,
                provider_callback_secret=NOTICE_SECRET if notify else None,
                runner_poll_seconds=0.05,
                sweep_seconds=0.2,
                public_base_url=url,
                # An override may depend on the simulator's URL: pass a function of it.
                **{k: v(sim_url) if callable(v) else v for k, v in overrides.items()},
            )
            app = create_app(settings)
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
            )
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                assert not serving.done(), "the gateway did not start"
                await asyncio.sleep(0.02)
            try:
                state: GatewayState = app.state.gateway
                created = await create_token(state.db, "live")
                async with httpx.AsyncClient(
                    base_url=url, timeout=60, event_hooks=contract_hooks()
                ) as client:
                    yield Live(
                        url, sim_url, client, {"Authorization": f"Bearer {created.token}"}, state
                    )
            finally:
                server.should_exit = True
                await serving
                sock.close()

    yield start
    await stack.aclose()
