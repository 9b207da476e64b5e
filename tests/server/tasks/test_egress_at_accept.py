"""The egress policy at invoke: a callback URL at a literal non-public address, in any
spelling, is a 400; so are caller-supplied image URLs (the field named), unless the executor
is a self-hosted Coze meant to read internal URLs; the gateway's own /media URLs for a stored
imageBase64 are not the caller's."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import create_token
from tests.conftest import make_settings
from tests.server.conftest import LiveFactory

PROMPT = "ability_coze_prompt_extract"
OUTPAINT = "ability_coze_outpaint"
EXPAND = {"expand_top": 0, "expand_bottom": 0, "expand_left": 4, "expand_right": 4}
NON_PUBLIC = "points at a private, loopback or otherwise non-public address"
# A refused callback URL also says which setting lets an operator allow an internal one.
CALLBACK_NON_PUBLIC = (
    NON_PUBLIC + " (an operator may allow internal networks: GATEWAY_EGRESS_ALLOW)"
)
SAMPLE = "/files/samples/square.png"


@pytest.fixture
def strict(tmp_path: Path, sim_url: str) -> Any:
    """``async with strict(**settings)`` → (client, headers) of a gateway with no allow list."""
    import contextlib

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
        settings = make_settings(tmp_path / "gw", sim_url, **{"egress_allow": "", **overrides})
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            token = await create_token(app.state.gateway.db, "images")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
                yield c, {"Authorization": f"Bearer {token.token}"}

    return start


async def _invoke(
    client: httpx.AsyncClient, headers: dict[str, str], ability: str, payload: dict[str, Any]
) -> httpx.Response:
    return await client.post(f"/api/abilities/{ability}/invoke", json=payload, headers=headers)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1./callback",
        "http://169.254.169.254./latest/meta-data/",
        "http://[fec0::1]/callback",
        "http://192.0.0.8/callback",
        "http://[fe80::1%25eth0]/callback",
        "http://198.18.0.1/callback",
    ],
)
async def test_a_callback_url_at_a_special_purpose_address_is_400(
    strict: Any, sim_url: str, url: str
) -> None:
    async with strict(coze_allow_internal_image_urls=True) as (client, headers):
        response = await _invoke(
            client, headers, PROMPT, {"inputs": {"url": sim_url + SAMPLE}, "callbackUrl": url}
        )
    assert response.status_code == 400, response.text
    assert response.json()["errors"] == [{"field": "callbackUrl", "problem": CALLBACK_NON_PUBLIC}]


@pytest.mark.parametrize(
    ("ability", "payload", "field"),
    [
        (
            PROMPT,
            {"imageUrl": "http://169.254.169.254/latest/meta-data/", "inputs": {}},
            "imageUrl",
        ),
        (PROMPT, {"inputs": {"url": "http://169.254.169.254./latest/meta-data/"}}, "inputs.url"),
        (PROMPT, {"inputs": {"url": "http://127.0.0.1:9/a.png"}}, "inputs.url"),
        (OUTPAINT, {"inputs": {**EXPAND, "Url": "http://[fec0::1]/a.png"}}, "inputs.Url"),
        (OUTPAINT, {"imageUrl": "http://192.0.0.8/a.png", "inputs": EXPAND}, "imageUrl"),
    ],
)
async def test_an_image_url_at_a_non_public_address_is_400(
    strict: Any, ability: str, payload: dict[str, Any], field: str
) -> None:
    async with strict() as (client, headers):
        response = await _invoke(client, headers, ability, payload)
    assert response.status_code == 400, response.text
    assert response.json()["errors"] == [{"field": field, "problem": NON_PUBLIC}]


async def test_an_image_url_naming_localhost_is_400(strict: Any) -> None:
    async with strict() as (client, headers):
        response = await _invoke(
            client, headers, PROMPT, {"inputs": {"url": "http://localhost:9/a.png"}}
        )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "inputs.url", "problem": "names a loopback host"}
    ]


async def test_the_egress_allow_list_opens_image_urls(strict: Any, sim_url: str) -> None:
    async with strict(egress_allow="127.0.0.0/8") as (client, headers):
        response = await _invoke(client, headers, PROMPT, {"inputs": {"url": sim_url + SAMPLE}})
    assert response.status_code == 200, response.text


async def test_the_default_executor_setting_lets_a_local_coze_read_internal_urls(
    strict: Any, sim_url: str
) -> None:
    async with strict(coze_allow_internal_image_urls=True) as (client, headers):
        response = await _invoke(
            client, headers, PROMPT, {"imageUrl": sim_url + SAMPLE, "inputs": {}}
        )
    assert response.status_code == 200, response.text


def _executors(tmp_path: Path, sim_url: str) -> Path:
    path = tmp_path / "executors.yaml"
    path.write_text(
        f"""
executors:
  - {{id: inside, baseUrl: "{sim_url}", auth: {{type: token, token: pat_simulator}},
     allowInternalImageUrls: true}}
  - {{id: cloud, baseUrl: "{sim_url}", auth: {{type: token, token: pat_simulator}}}}
""",
        encoding="utf-8",
    )
    return path


async def test_an_executor_marked_internal_takes_internal_image_urls(
    strict: Any, tmp_path: Path, sim_url: str
) -> None:
    files = _executors(tmp_path, sim_url)
    async with strict(executors_file=files, coze_api_token=None) as (client, headers):
        inside = await _invoke(
            client, headers, PROMPT, {"inputs": {"url": sim_url + SAMPLE}, "executorId": "inside"}
        )
        cloud = await _invoke(
            client, headers, PROMPT, {"inputs": {"url": sim_url + SAMPLE}, "executorId": "cloud"}
        )
        # Unnamed, the task may get either executor: refused unless every one takes them.
        either = await _invoke(client, headers, PROMPT, {"inputs": {"url": sim_url + SAMPLE}})
    assert inside.status_code == 200, inside.text
    assert cloud.status_code == 400
    assert cloud.json()["errors"] == [{"field": "inputs.url", "problem": NON_PUBLIC}]
    assert either.status_code == 400


async def test_a_stored_base64_image_passes_by_the_gateways_own_url(live: LiveFactory) -> None:
    # No allow list, and the gateway's public URL is on loopback: its /media URL is its own.
    async with live(egress_allow="") as gw:
        async with httpx.AsyncClient() as plain:
            png = (await plain.get(gw.sim_url + SAMPLE)).content
        data = "data:image/png;base64," + base64.b64encode(png).decode()
        response = await gw.invoke(OUTPAINT, {"imageBase64": data, "inputs": EXPAND})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
