"""Reading ``/metrics`` in tests: the text parsed by prometheus-client's own parser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import CreatedToken, create_token
from ability_gateway.server.config import Settings
from ability_gateway.server.state import GatewayState
from tests.contract import contract_hooks

PROMPT = "ability_coze_prompt_extract"  # a sync ability with a result cache
OUTPAINT = "ability_coze_outpaint"  # a sync ability whose output image is mirrored


@dataclass(frozen=True)
class Scrape:
    """Every sample of one scrape, by name and labels."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(samples)

    def value(self, name: str, **labels: str) -> float:
        """A sample's value; 0 when the scrape has no such sample."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples

    def moved(self, earlier: Scrape, name: str, **labels: str) -> float:
        return self.value(name, **labels) - earlier.value(name, **labels)


async def scrape(client: httpx.AsyncClient, headers: dict[str, str]) -> Scrape:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape.parse(response.text)


def bearer(token: CreatedToken | str) -> dict[str, str]:
    value = token if isinstance(token, str) else token.token
    return {"Authorization": f"Bearer {value}"}


@dataclass
class Gateway:
    client: httpx.AsyncClient
    state: GatewayState
    admin: dict[str, str]  # an admin token's header (it may scrape)
    app_token: dict[str, str]  # an app token's header (it invokes)

    async def invoke(
        self, ability: str, payload: dict[str, object], **headers: str
    ) -> httpx.Response:
        return await self.client.post(
            f"/api/abilities/{ability}/invoke",
            json=payload,
            headers={**self.app_token, **headers},
        )

    async def scrape(self) -> Scrape:
        return await scrape(self.client, self.admin)


@asynccontextmanager
async def gateway(settings: Settings, **token_limits: int) -> AsyncIterator[Gateway]:
    """A gateway app in-process with an admin token and an app token (``token_limits``)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: GatewayState = app.state.gateway
        admin = await create_token(state.db, "scraper", admin=True)
        app_token = await create_token(state.db, "app", **token_limits)  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", event_hooks=contract_hooks()
        ) as client:
            yield Gateway(client, state, bearer(admin), bearer(app_token))
