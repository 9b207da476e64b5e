"""A console client: an in-process gateway, a browser-like httpx client (cookies kept, the
page's Origin on POSTs) and helpers to sign in and read a page's CSRF token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import CreatedToken, create_token
from ability_gateway.server.state import GatewayState
from tests.conftest import make_settings

BASE = "http://gateway.test"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Console:
    client: httpx.AsyncClient
    state: GatewayState
    origin: str = BASE  # what a browser sends as Origin on the console's forms

    async def token(self, name: str = "app", *, admin: bool = False) -> CreatedToken:
        return await create_token(self.state.db, name, admin=admin)

    async def sign_in(self, token: CreatedToken | str) -> httpx.Response:
        value = token if isinstance(token, str) else token.token
        return await self.client.post(
            "/console/login", data={"token": value}, headers={"Origin": self.origin}
        )

    async def csrf(self, path: str = "/console/abilities") -> str:
        page = await self.client.get(path)
        match = CSRF_RE.search(page.text)
        assert match, page.text
        return match.group(1)

    async def post(self, path: str, data: dict[str, Any], **kwargs: Any) -> httpx.Response:
        headers = {"Origin": self.origin, **kwargs.pop("headers", {})}
        return await self.client.post(path, data=data, headers=headers, **kwargs)


@pytest.fixture
async def console(tmp_path: Path, sim_url: str) -> AsyncIterator[Console]:
    app = create_app(make_settings(tmp_path, sim_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=60) as client:
            yield Console(client, app.state.gateway)
