from __future__ import annotations

import httpx

EXPECTED = {
    # id: (workflow id, [(name, type, required)])
    "ability_coze_prompt_extract": [("url", "string", True), ("shuru", "string", False)],
    "ability_coze_pattern_extract": [
        ("url", "string", True),
        ("height", "number", True),
        ("width", "number", True),
        ("lora", "string", False),
    ],
    "ability_coze_image_gen_4step": [
        ("url", "string", True),
        ("height", "number", True),
        ("width", "number", True),
        ("prompt", "string", True),
    ],
    "ability_coze_image_gen_8step": [
        ("url", "string", True),
        ("height", "number", True),
        ("width", "number", True),
        ("prompt", "string", True),
    ],
    "ability_coze_outpaint": [
        ("Url", "string", True),
        ("expand_bottom", "number", True),
        ("expand_left", "number", True),
        ("expand_right", "number", True),
        ("expand_top", "number", True),
        ("moxing", "string", False),
    ],
    "ability_coze_upscale_8k": [("url", "string", True), ("bianchang", "number", True)],
    "ability_coze_tagging_small": [("url", "string", True)],
    "ability_coze_tagging_large": [("url", "string", True)],
}


TIMEOUTS = {  # seconds, from the shipped catalog
    "ability_coze_prompt_extract": 95,
    "ability_coze_pattern_extract": 1800,
    "ability_coze_image_gen_4step": 1800,
    "ability_coze_image_gen_8step": 1800,
    "ability_coze_outpaint": 600,
    "ability_coze_upscale_8k": 600,
    "ability_coze_tagging_small": 95,
    "ability_coze_tagging_large": 95,
}
GENERATION = {
    "ability_coze_pattern_extract",
    "ability_coze_image_gen_4step",
    "ability_coze_image_gen_8step",
}


async def test_list_abilities_returns_the_eight_in_the_spec_shape(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.get("/api/abilities", headers=auth)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["items"]
    assert [item["id"] for item in body["items"]] == list(EXPECTED)
    for item in body["items"]:
        assert set(item) == {
            "id",
            "displayName",
            "description",
            "provider",
            "capabilityKey",
            "status",
            "inputSchema",
            "mode",  # beyond the spec: sync or async, and the deadline
            "timeoutSeconds",
        }
        mode = "async" if item["id"] in GENERATION else "sync"
        assert (item["mode"], item["timeoutSeconds"]) == (mode, TIMEOUTS[item["id"]])
        assert item["provider"] == "coze"
        assert item["status"] == "active"
        assert list(item["inputSchema"]) == ["fields"]
        fields = item["inputSchema"]["fields"]
        assert [(f["name"], f["type"], f["required"]) for f in fields] == EXPECTED[item["id"]]
        for field in fields:
            assert set(field) == {"name", "type", "required", "description"}
            assert field["description"]


async def test_prompt_extract_matches_the_spec_example_exactly(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.get("/api/abilities/ability_coze_prompt_extract", headers=auth)
    assert response.status_code == 200
    assert response.json() == {
        "id": "ability_coze_prompt_extract",
        "displayName": "提示词提取",
        "description": "从图片中提取提示词",
        "provider": "coze",
        "capabilityKey": "prompt_extract",
        "status": "active",
        "mode": "sync",  # these two are beyond the spec example
        "timeoutSeconds": 95.0,
        "inputSchema": {
            "fields": [
                {"name": "url", "type": "string", "required": True, "description": "图片地址"},
                {
                    "name": "shuru",
                    "type": "string",
                    "required": False,
                    "description": "用户输入内容",
                },
            ]
        },
    }


async def test_unknown_ability_is_404_with_the_error_body(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.get(
        "/api/abilities/ability_nope", headers={**auth, "X-Request-ID": "req-404"}
    )
    assert response.status_code == 404
    assert response.json() == {
        "code": 404,
        "message": "Ability 'ability_nope' does not exist",
        "requestId": "req-404",
    }


async def test_abilities_need_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/abilities")
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == 401
    assert body["requestId"]
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_unknown_route_is_404_with_the_error_body(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.get("/api/nothing-here", headers=auth)
    assert response.status_code == 404
    assert response.json()["code"] == 404
    assert response.json()["message"] == "No such endpoint"


async def test_wrong_method_is_405_with_the_error_body(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.delete("/api/abilities", headers=auth)
    assert response.status_code == 405
    assert response.json()["code"] == 405
