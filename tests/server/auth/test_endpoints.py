"""The admin API's tokens: create (value and secret shown once), list, read, change, revoke,
rotate the value with an overlap, rotate the callback secret (both sign during the overlap).
Every route refuses a non-admin token (403) and a missing one (401)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import create_token
from ability_gateway.server.state import GatewayState
from tests.conftest import make_settings
from tests.server.conftest import LiveFactory
from tests.support import Receiver

PROMPT = "ability_coze_prompt_extract"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def admin(gateway: GatewayState) -> dict[str, str]:
    created = await create_token(gateway.db, "root", admin=True)
    return bearer(created.token)


async def create(client: httpx.AsyncClient, admin: dict[str, str], **body: Any) -> Any:
    response = await client.post("/api/admin/tokens", json={"name": "app", **body}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def works(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/api/abilities", headers=bearer(token))).status_code


async def test_a_created_token_is_shown_once_and_works(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = await create(client, admin, rateLimitPerMinute=600, expiresInDays=30)
    assert created["token"].startswith("agw_")
    assert created["callbackSecret"].startswith("whsec_")
    assert (created["state"], created["admin"], created["scopes"]) == (
        "active",
        False,
        ["abilities"],
    )
    assert created["limits"] == {"rateLimitPerMinute": 600, "maxConcurrentTasks": None}
    assert created["expiresAt"] - created["createdAt"] == 30 * 86_400_000
    assert await works(client, created["token"]) == 200
    # Never again: neither the list nor the token's own page holds a value or a secret.
    listed = (await client.get("/api/admin/tokens", headers=admin)).json()
    one = (await client.get(f"/api/admin/tokens/{created['id']}", headers=admin)).json()
    for shown in (*listed["items"], one):
        text = str(shown)
        assert created["token"] not in text
        assert created["callbackSecret"] not in text
        assert "token" not in shown
        assert "callbackSecret" not in shown
    assert created["id"] in [item["id"] for item in listed["items"]]
    assert one["prefix"] == created["token"][:10]


async def test_the_list_pages_with_a_cursor(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    ids = [(await create(client, admin, name=f"t{n}"))["id"] for n in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/admin/tokens", params=params, headers=admin)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert set(ids) <= set(seen)
    assert len(seen) == len(set(seen))


async def test_a_change_touches_only_the_fields_sent(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = await create(client, admin, rateLimitPerMinute=60, maxConcurrentTasks=3)
    url = f"/api/admin/tokens/{created['id']}"
    renamed = (await client.patch(url, json={"name": "renamed"}, headers=admin)).json()
    assert renamed["name"] == "renamed"
    assert renamed["limits"] == {"rateLimitPerMinute": 60, "maxConcurrentTasks": 3}
    cleared = (await client.patch(url, json={"rateLimitPerMinute": None}, headers=admin)).json()
    assert cleared["limits"] == {"rateLimitPerMinute": None, "maxConcurrentTasks": 3}
    expiring = (await client.patch(url, json={"expiresInDays": 1}, headers=admin)).json()
    assert expiring["expiresAt"] is not None
    forever = (await client.patch(url, json={"expiresInDays": None}, headers=admin)).json()
    assert forever["expiresAt"] is None
    assert forever["updatedAt"] >= forever["createdAt"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rateLimitPerMinute": 0}, "rateLimitPerMinute"),
        ({"maxConcurrentTasks": "many"}, "maxConcurrentTasks"),
        ({"name": ""}, "name"),
        ({"expiresInDays": -1}, "expiresInDays"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_a_bad_change_is_a_400_naming_the_field(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any], field: str
) -> None:
    created = await create(client, admin)
    response = await client.patch(f"/api/admin/tokens/{created['id']}", json=body, headers=admin)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]


@pytest.mark.parametrize(
    "body", [{}, {"name": "x" * 201}, {"name": "a", "admin": "yes"}, {"name": "a", "scopes": []}]
)
async def test_a_bad_creation_is_a_400(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    response = await client.post("/api/admin/tokens", json=body, headers=admin)
    assert response.status_code == 400
    assert response.json()["errors"]


async def test_a_revoked_token_stops_at_once_here_and_cannot_be_changed(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = await create(client, admin)
    assert await works(client, created["token"]) == 200  # now in the token cache
    revoked = await client.post(f"/api/admin/tokens/{created['id']}/revoke", headers=admin)
    assert revoked.json()["state"] == "revoked"
    assert await works(client, created["token"]) == 401
    again = await client.post(f"/api/admin/tokens/{created['id']}/revoke", headers=admin)
    assert again.json()["revokedAt"] == revoked.json()["revokedAt"]
    refused = await client.patch(
        f"/api/admin/tokens/{created['id']}", json={"name": "back"}, headers=admin
    )
    assert refused.status_code == 409
    rotate = await client.post(f"/api/admin/tokens/{created['id']}/rotate", headers=admin)
    assert rotate.status_code == 409


async def test_a_rotation_without_overlap_ends_the_old_value_at_once(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = await create(client, admin)
    assert await works(client, created["token"]) == 200
    rotated = await client.post(f"/api/admin/tokens/{created['id']}/rotate", headers=admin)
    assert rotated.status_code == 200
    new = rotated.json()["token"]
    assert new != created["token"]
    assert rotated.json()["tokenInfo"]["previousValueValidUntil"] is None
    assert await works(client, created["token"]) == 401
    assert await works(client, new) == 200


async def test_the_old_value_works_for_the_overlap_then_stops(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = await create(client, admin)
    rotated = await client.post(
        f"/api/admin/tokens/{created['id']}/rotate", json={"overlapSeconds": 1}, headers=admin
    )
    body = rotated.json()
    assert body["tokenInfo"]["previousValueValidUntil"] is not None
    assert await works(client, created["token"]) == 200  # cached until the overlap's end
    assert await works(client, body["token"]) == 200
    await asyncio.sleep(1.3)
    assert await works(client, created["token"]) == 401
    assert await works(client, body["token"]) == 200


@pytest.mark.parametrize("overlap", [-1, 31 * 86_400, "soon"])
async def test_a_bad_overlap_is_a_400(
    client: httpx.AsyncClient, admin: dict[str, str], overlap: Any
) -> None:
    created = await create(client, admin)
    for action in ("rotate", "rotate_secret"):
        response = await client.post(
            f"/api/admin/tokens/{created['id']}/{action}",
            json={"overlapSeconds": overlap},
            headers=admin,
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "overlapSeconds"


async def test_every_token_route_refuses_an_app_token_and_no_token(
    client: httpx.AsyncClient, admin: dict[str, str], auth: dict[str, str]
) -> None:
    target = (await create(client, admin))["id"]
    routes = [
        ("POST", "/api/admin/tokens", {"name": "x"}),
        ("GET", "/api/admin/tokens", None),
        ("GET", f"/api/admin/tokens/{target}", None),
        ("PATCH", f"/api/admin/tokens/{target}", {"name": "x"}),
        ("POST", f"/api/admin/tokens/{target}/revoke", None),
        ("POST", f"/api/admin/tokens/{target}/rotate", None),
        ("POST", f"/api/admin/tokens/{target}/rotate_secret", None),
    ]
    for method, url, body in routes:
        forbidden = await client.request(method, url, json=body, headers=auth)
        assert forbidden.status_code == 403, (method, url)
        assert forbidden.json()["code"] == 403
        anonymous = await client.request(method, url, json=body)
        assert anonymous.status_code == 401, (method, url)
    # Nothing was changed by the refused calls.
    view = (await client.get(f"/api/admin/tokens/{target}", headers=admin)).json()
    assert (view["name"], view["state"]) == ("app", "active")


async def test_an_unknown_token_is_a_404(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for method, suffix in (("GET", ""), ("PATCH", ""), ("POST", "/revoke"), ("POST", "/rotate")):
        response = await client.request(
            method, f"/api/admin/tokens/tok_nope{suffix}", json={}, headers=admin
        )
        assert response.status_code == 404, (method, suffix)


async def test_last_use_is_recorded_without_a_write_per_request(
    client: httpx.AsyncClient, admin: dict[str, str], gateway: GatewayState
) -> None:
    created = await create(client, admin)
    assert created["lastUsedAt"] is None
    gateway.last_used._next_flush = 0.0  # the next use flushes (at most once a minute)
    assert await works(client, created["token"]) == 200
    for _ in range(5):
        await works(client, created["token"])  # these are only remembered
    await asyncio.gather(*gateway.inflight)
    view = (await client.get(f"/api/admin/tokens/{created['id']}", headers=admin)).json()
    assert view["lastUsedAt"] is not None
    assert view["lastUsedAt"] >= view["createdAt"]
    assert gateway.last_used._pending  # the later uses wait for the next flush


def signatures(request: dict[str, Any]) -> list[str]:
    return str(request["headers"]["webhook-signature"]).split(" ")


def verifies(secret: str, request: dict[str, Any]) -> bool:
    headers = {k.lower(): v for k, v in request["headers"].items()}
    try:
        Webhook(secret).verify(request["body"], headers)
    except Exception:
        return False
    return True


async def test_both_callback_secrets_sign_during_a_secret_rotations_overlap(
    live: LiveFactory,
) -> None:
    with Receiver() as receiver:
        async with live(egress_allow="127.0.0.0/8") as gw:
            root = await create_token(gw.state.db, "root", admin=True)
            app = await create_token(gw.state.db, "app")
            gw.headers = bearer(app.token)
            url = f"/api/admin/tokens/{app.id}/rotate_secret"
            rotated = await gw.client.post(
                url, json={"overlapSeconds": 3600}, headers=bearer(root.token)
            )
            new_secret = rotated.json()["callbackSecret"]
            image = f"{gw.sim_url}/files/samples/square.png"
            payload = {"inputs": {"url": image}, "callbackUrl": receiver.url}
            await gw.invoke(PROMPT, payload)
            [during] = await receiver.wait(1)
            # Ended now: the next callback carries the new signature only.
            await gw.client.post(url, json={"overlapSeconds": 0}, headers=bearer(root.token))
            newest = (
                await gw.client.get(f"/api/admin/tokens/{app.id}", headers=bearer(root.token))
            ).json()
            assert newest["previousSecretValidUntil"] is None
            await gw.invoke(PROMPT, {**payload, "inputs": {"url": f"{image}?again=1"}})
            after = (await receiver.wait(2))[1]
    assert len(signatures(during)) == 2
    assert verifies(app.callback_secret, during)  # a receiver not yet updated
    assert verifies(new_secret, during)  # a receiver already updated
    assert len(signatures(after)) == 1
    assert not verifies(new_secret, after)  # the secret rotated again, without overlap
    assert not verifies(app.callback_secret, after)


async def test_revocation_and_rotation_reach_another_node_within_the_auth_cache_time(
    tmp_path: Path, sim_url: str
) -> None:
    settings = make_settings(tmp_path, sim_url, auth_cache_seconds=0.5)
    node_a, node_b = create_app(settings), create_app(settings)  # one database, two nodes
    async with node_a.router.lifespan_context(node_a), node_b.router.lifespan_context(node_b):
        state: GatewayState = node_a.state.gateway
        root = bearer((await create_token(state.db, "root", admin=True)).token)
        a = httpx.AsyncClient(transport=httpx.ASGITransport(app=node_a), base_url="http://a")
        b = httpx.AsyncClient(transport=httpx.ASGITransport(app=node_b), base_url="http://b")
        async with a, b:
            revoked = await create(a, root)
            rotated = await create(a, root)
            for made in (revoked, rotated):
                assert await works(b, made["token"]) == 200  # node B caches them
            await a.post(f"/api/admin/tokens/{revoked['id']}/revoke", headers=root)
            await a.post(f"/api/admin/tokens/{rotated['id']}/rotate", headers=root)
            await asyncio.sleep(0.6)  # B's cache holds a token for at most 0.5 s
            assert await works(b, revoked["token"]) == 401
            assert await works(b, rotated["token"]) == 401


async def test_quotas_are_set_at_creation_and_changed_by_field(
    client: httpx.AsyncClient, admin: dict[str, str], sample_image: str
) -> None:
    created = await create(
        client, admin, quotas={"dailyInvocations": 1, "dailyInvocationsByAbility": {PROMPT: 5}}
    )
    assert created["quotas"] == {
        "dailyInvocations": 1,
        "dailyInvocationsByAbility": {PROMPT: 5},
        "mediaBytes": None,
    }
    invoke = f"/api/abilities/{PROMPT}/invoke"
    headers = bearer(created["token"])
    first = await client.post(invoke, json={"inputs": {"url": sample_image}}, headers=headers)
    assert first.status_code == 200
    refused = await client.post(
        invoke, json={"inputs": {"url": f"{sample_image}?2"}}, headers=headers
    )
    assert refused.status_code == 429
    assert refused.json()["quota"] == "dailyInvocations"
    url = f"/api/admin/tokens/{created['id']}"
    raised = (
        await client.patch(url, json={"quotas": {"dailyInvocations": 10}}, headers=admin)
    ).json()
    assert raised["quotas"]["dailyInvocations"] == 10
    assert raised["quotas"]["dailyInvocationsByAbility"] == {PROMPT: 5}  # not sent: kept
    again = await client.post(
        invoke, json={"inputs": {"url": f"{sample_image}?3"}}, headers=headers
    )
    assert again.status_code == 200
    removed = (
        await client.patch(url, json={"quotas": {"dailyInvocations": None}}, headers=admin)
    ).json()
    assert removed["quotas"]["dailyInvocations"] is None
    bad = await client.patch(url, json={"quotas": {"mediaBytes": -1}}, headers=admin)
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "quotas.mediaBytes"
