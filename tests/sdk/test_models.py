"""The models read the spec's examples and the gateway's answers; unknown fields are kept."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ability_gateway import (
    Ability,
    AsyncClient,
    CallbackPayload,
    Deliveries,
    InvokeResult,
    Media,
    Task,
    TaskPage,
)
from ability_gateway._models import TASK_STATUSES, TERMINAL_STATUSES

ABILITY = {  # spec §3.1.2
    "id": "ability_coze_prompt_extract",
    "displayName": "提示词提取",
    "description": "从图片中提取提示词",
    "provider": "coze",
    "capabilityKey": "prompt_extract",
    "status": "active",
    "inputSchema": {
        "fields": [
            {"name": "url", "type": "string", "required": True, "description": "图片地址"},
            {"name": "shuru", "type": "string", "required": False, "description": "用户输入内容"},
        ]
    },
}

RESULT = {  # spec §3.2.3
    "abilityId": "ability_coze_prompt_extract",
    "provider": "coze",
    "status": "succeeded",
    "requestId": "abc123",
    "logId": 12345,
    "durationMs": 1200,
    "images": [
        {
            "ossUrl": "https://example.com/image.png",
            "sourceUrl": "https://example.com/image.png",
            "type": "image",
        }
    ],
    "videos": [],
    "texts": ["提示词内容"],
    "assets": [],
    "metadata": {"model": "coze", "state": "completed", "taskId": "task123"},
    "raw": {"response": {"code": 0, "msg": None, "execute_id": "task123"}},
}

TASK = {  # spec §3.3.3
    "id": "task123",
    "abilityId": "ability_coze_pattern_extract",
    "status": "succeeded",
    "requestId": "abc123",
    "logId": 12345,
    "createTime": "2026-01-22T10:00:00Z",
    "updateTime": "2026-01-22T10:01:00Z",
    "resultPayload": {
        "texts": ["花纹提取完成"],
        "images": [
            {
                "ossUrl": "https://example.com/pattern.png",
                "sourceUrl": "https://example.com/pattern.png",
                "type": "image",
            }
        ],
    },
    "errorPayload": None,
}


def test_ability_reads_the_spec_example() -> None:
    ability = Ability.model_validate(ABILITY)
    assert ability.display_name == "提示词提取"
    assert ability.capability_key == "prompt_extract"
    assert [f.name for f in ability.input_schema.fields] == ["url", "shuru"]
    assert ability.input_schema.fields[0].required is True
    assert ability.model_dump(by_alias=True, exclude_unset=True) == ABILITY
    assert (ability.mode, ability.timeout_seconds) == ("sync", None)  # beyond the spec
    beyond = Ability.model_validate({**ABILITY, "mode": "async", "timeoutSeconds": 1800})
    assert (beyond.mode, beyond.timeout_seconds) == ("async", 1800)


def test_invoke_result_reads_the_spec_example() -> None:
    result = InvokeResult.model_validate(RESULT)
    assert result.task_id == "task123"
    assert result.log_id == 12345
    assert result.duration_ms == 1200
    assert result.images == [
        Media(oss_url="https://example.com/image.png", source_url="https://example.com/image.png")
    ]
    assert result.is_terminal


def test_task_reads_the_spec_example() -> None:
    task = Task.model_validate(TASK)
    assert task.create_time == datetime(2026, 1, 22, 10, 0, tzinfo=UTC)
    assert task.update_time.tzinfo is not None
    assert task.texts == ["花纹提取完成"]
    assert task.images[0].oss_url == "https://example.com/pattern.png"
    assert task.videos == []
    assert task.is_terminal
    assert task.callback is None
    assert task.error_message is None


def test_a_running_task_has_no_results_yet() -> None:
    task = Task.model_validate({**TASK, "status": "running", "resultPayload": None})
    assert not task.is_terminal
    assert (task.texts, task.images) == ([], [])


def test_unknown_fields_are_kept_and_names_or_aliases_construct() -> None:
    task = Task.model_validate({**TASK, "priority": "high"})
    assert task.model_extra == {"priority": "high"}
    media = Media(ossUrl=None, source_url="https://coze/a.png", type="video")
    assert media.url == "https://coze/a.png"


def test_callback_payload_reads_the_spec_example() -> None:
    payload = CallbackPayload.model_validate(
        {
            "requestId": "abc123",
            "taskId": "task123",
            "abilityId": "ability_coze_pattern_extract",
            "status": "failed",
            "durationMs": 60000,
            "texts": [],
            "images": [],
            "videos": [],
            "assets": [],
            "metadata": {"model": "coze", "state": "failed"},
            "errorMessage": "Workflow failed",
            "errorCode": 720701013,
        }
    )
    assert (payload.error_message, payload.error_code) == ("Workflow failed", 720701013)
    assert payload.webhook_id is None  # only verify_callback knows it


def test_deliveries_and_pages_read_the_wire() -> None:
    deliveries = Deliveries.model_validate(
        {
            "delivery": {
                "id": "dlv_1",
                "url": "https://app/cb",
                "state": "delivered",
                "attemptCount": 1,
                "lastStatus": 200,
                "lastError": None,
                "nextAttemptTime": None,
                "deliveredTime": "2026-01-22T10:01:00Z",
                "createTime": "2026-01-22T10:01:00Z",
            },
            "attempts": [
                {
                    "number": 1,
                    "manual": False,
                    "time": "2026-01-22T10:01:00Z",
                    "durationMs": 12,
                    "httpStatus": 200,
                    "error": None,
                    "response": '{"code":0}',
                }
            ],
        }
    )
    assert deliveries.delivery is not None
    assert deliveries.delivery.attempt_count == 1
    assert deliveries.attempts[0].http_status == 200
    page = TaskPage.model_validate({"items": [TASK], "nextCursor": "task_0"})
    assert page.next_cursor == "task_0"
    assert page.items[0].id == "task123"


def test_statuses() -> None:
    assert set(TASK_STATUSES) >= TERMINAL_STATUSES
    assert "running" not in TERMINAL_STATUSES


async def test_the_gateways_answers_keep_no_unknown_fields(
    aclient: AsyncClient, sample_image: str
) -> None:
    """The models cover every field the gateway sends today (nothing lands in extras)."""
    abilities = await aclient.list_abilities()
    result = await aclient.invoke_ability("ability_coze_prompt_extract", {"url": sample_image})
    task = await aclient.get_task_status(result.task_id)
    page = await aclient.list_tasks_page()
    models: list[Any] = [*abilities, result, task, page, *result.images]
    for ability in abilities:
        models.extend(ability.input_schema.fields)
    assert all(not m.model_extra for m in models), [m.model_extra for m in models]


@pytest.mark.parametrize(
    ("model", "schema"),
    [
        ("Ability", "Ability"),
        ("InputField", "InputField"),
        ("InputSchema", "InputSchema"),
        ("Media", "Media"),
        ("InvokeResult", "InvokeResult"),
        ("CallbackSummary", "CallbackSummary"),
        ("Task", "Task"),
        ("Delivery", "Delivery"),
        ("Deliveries", "Deliveries"),
        ("DeliveryAttempt", "Attempt"),
        ("CallbackPayload", "CallbackBody"),
    ],
)
def test_each_sdk_model_has_every_field_of_its_published_schema(model: str, schema: str) -> None:
    """Field by field against the OpenAPI document the gateway publishes: a field the
    gateway adds must reach the SDK (the SDK may keep fields of its own, e.g. helpers)."""
    from ability_gateway import _models
    from tests.contract import document

    published = set(document()["components"]["schemas"][schema].get("properties", {}))
    cls = getattr(_models, model)
    ours = {field.alias or name for name, field in cls.model_fields.items()}
    assert published - ours == set(), f"{model} lacks {sorted(published - ours)}"
