from __future__ import annotations

import hashlib

import httpx
import pytest
from sqlalchemy import select, update

from ability_gateway.server.auth.service import create_token, revoke_token
from ability_gateway.server.models import tokens
from ability_gateway.server.state import GatewayState


async def test_token_is_stored_hashed(gateway: GatewayState) -> None:
    created = await create_token(gateway.db, "hashing")
    async with gateway.db.read() as conn:
        row = (await conn.execute(select(tokens).where(tokens.c.id == created.id))).mappings().one()
    assert row["token_hash"] == hashlib.sha256(created.token.encode()).hexdigest()
    assert created.token not in {str(v) for v in row.values()}
    assert created.callback_secret.startswith("whsec_")
    assert row["scopes"] == ["abilities"]


async def test_admin_token_has_the_admin_scope(gateway: GatewayState) -> None:
    created = await create_token(gateway.db, "admin", admin=True)
    assert created.scopes == ["abilities", "admin"]


@pytest.mark.parametrize(
    "header",
    [
        "agw_" + "a" * 43,  # no scheme
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer not-a-gateway-token",
        "Bearer agw_short",
    ],
)
async def test_missing_or_malformed_token_is_401(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/api/abilities", headers={"Authorization": header})
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == 401
    assert body["requestId"] == response.headers["x-request-id"]
    assert body["message"].startswith("Malformed") or body["message"].startswith("Missing")


async def test_unknown_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/abilities", headers={"Authorization": "Bearer agw_" + "A" * 43}
    )
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid, revoked or expired token"


async def test_revoked_token_is_401(client: httpx.AsyncClient, gateway: GatewayState) -> None:
    created = await create_token(gateway.db, "to-revoke")
    headers = {"Authorization": f"Bearer {created.token}"}
    assert (await client.get("/api/abilities", headers=headers)).status_code == 200
    assert await revoke_token(gateway.db, created.id)
    gateway.token_cache.clear()
    response = await client.get("/api/abilities", headers=headers)
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid, revoked or expired token"
    assert not await revoke_token(gateway.db, created.id)


async def test_expired_token_is_401(client: httpx.AsyncClient, gateway: GatewayState) -> None:
    created = await create_token(gateway.db, "expiring", expires_in_days=1)
    headers = {"Authorization": f"Bearer {created.token}"}
    assert (await client.get("/api/abilities", headers=headers)).status_code == 200
    await gateway.db.run_write(
        lambda conn: conn.execute(
            update(tokens).where(tokens.c.id == created.id).values(expires_at=tokens.c.created_at)
        )
    )
    gateway.token_cache.clear()  # as if the cache entry had aged out
    response = await client.get("/api/abilities", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == 401


async def test_valid_token_is_cached_for_the_configured_time(
    client: httpx.AsyncClient, gateway: GatewayState
) -> None:
    created = await create_token(gateway.db, "cached")
    headers = {"Authorization": f"Bearer {created.token}"}
    assert (await client.get("/api/abilities", headers=headers)).status_code == 200
    assert await revoke_token(gateway.db, created.id)
    # Within the cache time the revocation is not seen yet; after it, it is.
    assert (await client.get("/api/abilities", headers=headers)).status_code == 200
    gateway.token_cache.ttl = 0
    gateway.token_cache.clear()
    assert (await client.get("/api/abilities", headers=headers)).status_code == 401
