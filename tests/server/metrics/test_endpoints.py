"""``GET /metrics``: who may read it, what it answers when off, and that it stays out of the
OpenAPI document."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from ability_gateway.server.auth.service import CreatedToken, create_token
from ability_gateway.server.config import Settings
from ability_gateway.server.state import GatewayState
from tests.conftest import make_settings
from tests.server.metrics.support import PROMPT, bearer, gateway, scrape

METRICS_TOKEN = "metrics-scraper-0123456789abcdef"


@pytest.fixture
def settings(tmp_path: Path, sim_url: str) -> Settings:
    return make_settings(tmp_path, sim_url, metrics_token=METRICS_TOKEN)


async def test_metrics_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == 401


async def test_metrics_with_an_app_token_is_403(
    client: httpx.AsyncClient, token: CreatedToken
) -> None:
    response = await client.get("/metrics", headers=bearer(token))
    assert response.status_code == 403
    assert response.json()["code"] == 403
    assert "admin" in response.json()["message"]


async def test_metrics_with_an_admin_token_is_the_prometheus_text(
    client: httpx.AsyncClient, gateway: GatewayState
) -> None:
    admin = await create_token(gateway.db, "ops", admin=True)
    found = await scrape(client, bearer(admin))
    assert found.has("gateway_executor_circuit_state", executor="default", state="closed")


async def test_metrics_with_the_metrics_token_is_200(client: httpx.AsyncClient) -> None:
    found = await scrape(client, bearer(METRICS_TOKEN))
    assert found.value("gateway_executor_circuit_state", executor="default", state="closed") == 1


async def test_a_wrong_metrics_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics", headers=bearer(METRICS_TOKEN[:-1] + "x"))
    assert response.status_code == 401


def test_metrics_is_not_an_api_operation(app: FastAPI) -> None:
    assert "/metrics" not in app.openapi()["paths"]


async def test_metrics_turned_off_is_404_and_records_nothing(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    settings = make_settings(tmp_path, sim_url, metrics_enabled=False, metrics_token=METRICS_TOKEN)
    labels = {"ability": PROMPT, "mode": "sync", "outcome": "succeeded"}
    before = REGISTRY.get_sample_value("gateway_invocations_total", labels) or 0.0
    async with gateway(settings) as gw:
        response = await gw.client.get("/metrics", headers=bearer(METRICS_TOKEN))
        assert response.status_code == 404
        assert response.json()["message"] == "No such endpoint"  # as for an unknown route
        assert (await gw.client.get("/metrics", headers=gw.admin)).status_code == 404
        invoked = await gw.invoke(PROMPT, {"inputs": {"url": sample_image}})
        assert invoked.status_code == 200, invoked.text
    assert (REGISTRY.get_sample_value("gateway_invocations_total", labels) or 0.0) == before
