from __future__ import annotations

import httpx
from fastapi import FastAPI


async def test_unexpected_error_is_500_with_the_uniform_body(app: FastAPI) -> None:
    async def explode() -> None:
        raise RuntimeError("boom: secret details")

    app.add_api_route("/explode", explode)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.get("/explode", headers={"X-Request-ID": "r-500"})
    assert response.status_code == 500
    assert response.json() == {
        "code": 500,
        "message": "Internal server error",
        "requestId": "r-500",
    }
    assert response.headers["x-request-id"] == "r-500"


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {
        "status": "ready",
        "executors": [{"id": "default", "state": "closed"}],
    }


async def test_openapi_documents_the_invoke_body(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    invoke = spec["paths"]["/api/abilities/{ability_id}/invoke"]["post"]
    assert invoke["operationId"] == "invoke_ability"
    ref = invoke["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/InvokeRequest"
    fields = spec["components"]["schemas"]["InvokeRequest"]["properties"]
    assert set(fields) == {
        "executorId",
        "inputs",
        "imageUrl",
        "imageBase64",
        "callbackUrl",
        "callbackHeaders",
        "metadata",
    }
