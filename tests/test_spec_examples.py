"""The integration guide's own client code (spec §5.1–5.3, §6.2) against a real server.

The guide's example image, https://example.com/image.png, is replaced by an image the simulator
serves: the simulated workflows download their input, as Coze's do, and this machine has no
route to example.com. Its callback URL, https://your-server.com/callback, is replaced by a
loopback receiver for the same reason: tests never leave loopback.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LiveGateway
from tests.support import Receiver


class AbilityClient:
    """Spec §5.3, verbatim but for the docstrings."""

    def __init__(self, base_url, token):  # type: ignore[no-untyped-def]
        self.base_url = base_url
        self.token = token
        self.client = httpx.Client(
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            timeout=30.0,
        )

    def list_abilities(self):  # type: ignore[no-untyped-def]
        url = f"{self.base_url}/api/abilities"
        response = self.client.get(url)
        response.raise_for_status()
        return response.json()

    def get_ability(self, ability_id):  # type: ignore[no-untyped-def]
        url = f"{self.base_url}/api/abilities/{ability_id}"
        response = self.client.get(url)
        response.raise_for_status()
        return response.json()

    def invoke_ability(  # type: ignore[no-untyped-def]
        self,
        ability_id,
        inputs,
        image_url=None,
        image_base64=None,
        callback_url=None,
        callback_headers=None,
        metadata=None,
    ):
        url = f"{self.base_url}/api/abilities/{ability_id}/invoke"
        body = {"inputs": inputs}
        if image_url:
            body["imageUrl"] = image_url
        if image_base64:
            body["imageBase64"] = image_base64
        if callback_url:
            body["callbackUrl"] = callback_url
        if callback_headers:
            body["callbackHeaders"] = callback_headers
        if metadata:
            body["metadata"] = metadata
        response = self.client.post(url, json=body)
        response.raise_for_status()
        return response.json()

    def get_task_status(self, task_id):  # type: ignore[no-untyped-def]
        url = f"{self.base_url}/api/ability_tasks/{task_id}"
        response = self.client.get(url)
        response.raise_for_status()
        return response.json()


def test_spec_5_1_list_abilities(live_gateway: LiveGateway) -> None:
    url = f"{live_gateway.url}/api/abilities"
    headers = {"Authorization": f"Bearer {live_gateway.token}", "Content-Type": "application/json"}
    response = httpx.get(url, headers=headers)
    result = response.json()
    names = [f"- {a['displayName']} (ID: {a['id']})" for a in result["items"]]
    assert names[0] == "- 提示词提取 (ID: ability_coze_prompt_extract)"
    assert len(names) == 8


def test_spec_5_2_invoke_with_callback_fields(live_gateway: LiveGateway, sample_image: str) -> None:
    url = f"{live_gateway.url}/api/abilities/ability_coze_prompt_extract/invoke"
    headers = {"Authorization": f"Bearer {live_gateway.token}", "Content-Type": "application/json"}
    with Receiver() as receiver:
        body = {
            "inputs": {"url": sample_image, "shuru": ""},
            "callbackUrl": receiver.url,  # the guide: https://your-server.com/callback
            "callbackHeaders": {"X-Custom-Header": "your-custom-value"},
        }
        response = httpx.post(url, json=body, headers=headers, timeout=30)
        result = response.json()
        assert response.status_code == 200, result
        assert result["status"] == "succeeded"
        assert result["texts"][0]
        [callback] = receiver.wait_for(1)
    assert callback["headers"]["X-Custom-Header"] == "your-custom-value"  # type: ignore[index]


def test_spec_5_3_sdk_and_5_4_task_query(live_gateway: LiveGateway, sample_image: str) -> None:
    client = AbilityClient(base_url=live_gateway.url, token=live_gateway.token)
    abilities = client.list_abilities()
    assert len(abilities["items"]) == 8
    assert client.get_ability("ability_coze_tagging_small")["capabilityKey"] == "tagging_small"
    with Receiver() as receiver:
        result = client.invoke_ability(
            ability_id="ability_coze_prompt_extract",
            inputs={"url": sample_image, "shuru": ""},
            callback_url=receiver.url,  # the guide: https://your-server.com/callback
        )
        assert result["status"] == "succeeded"
        task_id = result["metadata"].get("taskId")
        task_result = client.get_task_status(task_id)
        assert task_result["status"] == "succeeded"
        assert task_result["resultPayload"]["texts"] == result["texts"]
        [callback] = receiver.wait_for(1)
    assert task_id in str(callback["body"])


def test_spec_6_2_errors_surface_as_http_status_errors(live_gateway: LiveGateway) -> None:
    client = AbilityClient(base_url=live_gateway.url, token=live_gateway.token)
    with pytest.raises(httpx.HTTPStatusError) as info:
        client.invoke_ability(ability_id="ability_coze_prompt_extract", inputs={})
    assert info.value.response.status_code == 400
    with pytest.raises(httpx.HTTPStatusError) as info:
        client.get_ability("ability_missing")
    assert info.value.response.status_code == 404
    bad = AbilityClient(base_url=live_gateway.url, token="wrong")
    with pytest.raises(httpx.HTTPStatusError) as info:
        bad.list_abilities()
    assert info.value.response.status_code == 401
