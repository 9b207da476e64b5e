"""SDK fixtures: clients bound to the real gateway, in-process and over real HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ability_gateway import AsyncClient, Client
from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import CreatedToken, create_token
from ability_gateway.server.config import Settings
from ability_gateway.server.state import GatewayState
from tests.conftest import LiveGateway
from tests.server.conftest import live  # noqa: F401 - the fixture, for the SDK tests

PROMPT = "ability_coze_prompt_extract"
GEN = "ability_coze_image_gen_4step"
OUTPAINT = "ability_coze_outpaint"
EXPAND = {"expand_top": 0, "expand_bottom": 0, "expand_left": 10, "expand_right": 20}


def gen_inputs(sim_url: str) -> dict[str, Any]:
    return {
        "url": f"{sim_url}/files/samples/square.png",
        "width": 640,
        "height": 320,
        "prompt": "一只猫",
    }


@pytest.fixture
async def aclient(app: FastAPI, token: CreatedToken) -> AsyncIterator[AsyncClient]:
    """An AsyncClient on the app in-process (its own database: only this test's tasks)."""
    async with AsyncClient(
        "http://gateway", token.token, transport=httpx.ASGITransport(app=app)
    ) as client:
        yield client


@pytest.fixture
def sclient(live_gateway: LiveGateway) -> Iterator[Client]:
    """A Client on a real ``ability-gateway serve`` process (shared by the session)."""
    with Client(live_gateway.url, live_gateway.token) as client:
        yield client


@contextlib.asynccontextmanager
async def gateway_app(settings: Settings) -> AsyncIterator[tuple[AsyncClient, GatewayState]]:
    """A gateway with these settings in-process, and an AsyncClient with a fresh token."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: GatewayState = app.state.gateway
        created = await create_token(state.db, "sdk")
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://gateway", created.token, transport=transport) as client:
            yield client, state


def write_png(path: Path, sim_url: str, name: str = "square.png") -> Path:
    path.write_bytes(httpx.get(f"{sim_url}/files/samples/{name}").content)
    return path
