"""The contract checker that every test client runs: it must catch what it is for."""

from __future__ import annotations

import orjson
import pytest

from tests.contract import ContractViolation, check_response, validate_against

JSON = "application/json"


def test_an_undocumented_status_is_a_violation() -> None:
    with pytest.raises(ContractViolation, match="does not list"):
        check_response("GET", "/api/abilities", 418, JSON, b"{}")


def test_a_body_that_does_not_match_its_schema_is_a_violation() -> None:
    with pytest.raises(ContractViolation, match=r"GET /api/ability_tasks/\{task_id\} 200"):
        check_response("GET", "/api/ability_tasks/task_1", 200, JSON, orjson.dumps({"id": 1}))


def test_an_error_body_is_checked_too() -> None:
    check_response(
        "GET", "/api/abilities/x", 404, JSON, b'{"code":404,"message":"no","requestId":"r"}'
    )
    with pytest.raises(ContractViolation):
        check_response("GET", "/api/abilities/x", 404, JSON, b'{"message":"no"}')


def test_routes_the_document_leaves_out_are_not_judged() -> None:
    check_response("GET", "/openapi.json", 200, JSON, b"{}")
    check_response("GET", "/no/such/route", 404, JSON, b"{}")


def test_an_invoke_result_must_carry_texts() -> None:
    result = {
        "abilityId": "a",
        "provider": "coze",
        "status": "succeeded",
        "requestId": "r",
        "logId": 1,
        "durationMs": 5,
        "images": [],
        "videos": [],
        "assets": [],
        "metadata": {},
        "raw": {},
    }
    with pytest.raises(ContractViolation, match="texts"):
        validate_against("InvokeResult", result)
    validate_against("InvokeResult", {**result, "texts": ["a prompt"]})
