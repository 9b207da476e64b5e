"""The OpenAPI document's route classes match what the routes really do."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from ability_gateway.server.openapi import SECURITY_SCHEME


async def test_routes_documented_with_a_bearer_token_refuse_requests_without_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    document = app.openapi()
    checked = 0
    for path, item in document["paths"].items():
        url = path.replace("{", "").replace("}", "")  # every path parameter: its own name
        for method, operation in item.items():
            answer = await client.request(method.upper(), url)
            if operation.get("security") == [{SECURITY_SCHEME: []}]:
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.json()["code"] == 401
                checked += 1
            elif not path.startswith("/api/provider_callbacks/"):  # signed, so 401 unsigned
                assert answer.status_code != 401, (method, path, answer.text)
    assert checked >= 9


def test_no_route_documents_the_422_it_never_sends(app: FastAPI) -> None:
    document = app.openapi()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (method, path)
            assert {"400", "413", "503"} <= set(operation["responses"]), (method, path)
    assert "HTTPValidationError" not in document["components"]["schemas"]
