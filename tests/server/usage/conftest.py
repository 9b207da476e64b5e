"""A gateway in-process with settings of the test's choosing, and helpers for usage tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import CreatedToken, create_token
from ability_gateway.server.models.usage_rollup import BUCKET_COLUMNS
from ability_gateway.server.state import GatewayState
from ability_gateway.server.usage import repository
from ability_gateway.server.usage.service import set_quotas
from tests.conftest import make_settings
from tests.contract import contract_hooks

PROMPT = "ability_coze_prompt_extract"
TAGGING = "ability_coze_tagging_small"
UPSCALE = "ability_coze_upscale_8k"


def bearer(token: CreatedToken) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.token}"}


@dataclass
class Gateway:
    client: httpx.AsyncClient
    state: GatewayState
    sim_url: str

    async def token(self, name: str = "app", *, admin: bool = False, **quotas: Any) -> CreatedToken:
        created = await create_token(self.state.db, name, admin=admin)
        if quotas:
            await set_quotas(self.state.db, created.id, **quotas, cache=self.state.token_cache)
        return created

    async def invoke(
        self, token: CreatedToken, ability: str = PROMPT, wish: str = "", **headers: str
    ) -> httpx.Response:
        inputs: dict[str, Any] = {"url": self.image}
        if ability == PROMPT:
            inputs["shuru"] = wish
        elif ability == UPSCALE:
            inputs["bianchang"] = 64
        return await self.client.post(
            f"/api/abilities/{ability}/invoke",
            json={"inputs": inputs},
            headers={**bearer(token), **headers},
        )

    @property
    def image(self) -> str:
        return f"{self.sim_url}/files/samples/square.png"

    async def usage(self, token: CreatedToken, path: str = "/api/usage", **params: str) -> Any:
        response = await self.client.get(path, params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        return response.json()


@contextlib.asynccontextmanager
async def gateway_app(tmp_path: Path, sim_url: str, **overrides: Any) -> AsyncIterator[Gateway]:
    app = create_app(make_settings(tmp_path, sim_url, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", event_hooks=contract_hooks()
        ) as client:
            yield Gateway(client, app.state.gateway, sim_url)


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def rollup(
    hour: str,
    token_id: str,
    ability_id: str = PROMPT,
    *,
    calls: int = 1,
    buckets: dict[str, int] | None = None,
    **counters: int,
) -> dict[str, Any]:
    """A whole rollup row at ``hour`` (ISO 8601), every counter 0 unless given."""
    row: dict[str, Any] = dict.fromkeys(repository.COUNTERS, 0)
    row.update(hour_start_ms=ms(hour), token_id=token_id, ability_id=ability_id, calls=calls)
    row.update(counters)
    for column, count in (buckets or {}).items():
        assert column in BUCKET_COLUMNS
        row[column] = count
    return row


async def add_rollups(state: GatewayState, *rows: dict[str, Any]) -> None:
    await state.db.run_write(lambda conn: repository.insert_rollups(conn, list(rows)))
