from __future__ import annotations

import json

import pytest

from ability_gateway.server.providers.coze.parsing import (
    as_int,
    decode_body,
    end_output,
    envelope_logid,
    history_end_vars,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        ("0", 0),
        ("720701013", 720701013),
        (" 4100 ", 4100),
        ("", None),
        (None, None),
        (True, None),
        (4000.0, 4000),
        ("abc", None),
        ("-1", -1),
    ],
)
def test_codes_may_be_ints_or_strings(value: object, expected: int | None) -> None:
    assert as_int(value) == expected


def test_output_of_return_variables_mode() -> None:
    assert end_output('{"output": "你好"}') == "你好"


def test_output_of_answer_mode() -> None:
    data = json.dumps({"content_type": 1, "data": "答案", "type_for_model": 2})
    assert end_output(data) == "答案"


def test_non_json_data_is_kept_as_text() -> None:
    assert end_output("plain text, not JSON") == "plain text, not JSON"


def test_data_without_output_key_is_returned_whole() -> None:
    assert end_output('{"data_list": ["https://s.coze.cn/t/x/"]}') == {
        "data_list": ["https://s.coze.cn/t/x/"]
    }


def test_double_encoded_history_output() -> None:
    inner = json.dumps({"output": "结果"}, ensure_ascii=False)
    outer = json.dumps({"node_status": "{}", "Output": inner}, ensure_ascii=False)
    assert history_end_vars(outer) == {"output": "结果"}


@pytest.mark.parametrize("output", ['{"Output":"null"}', '{"Output":null}', "{}"])
def test_history_output_not_ready(output: str) -> None:
    assert history_end_vars(output) is None


def test_decode_body_only_accepts_objects() -> None:
    assert decode_body(b"<html>502</html>") is None
    assert decode_body(b"[1]") is None
    assert decode_body(b'{"code": 0}') == {"code": 0}


def test_logid_from_detail() -> None:
    assert envelope_logid({"detail": {"logid": "2025X"}}) == "2025X"
    assert envelope_logid({"detail": "odd"}) is None
    assert envelope_logid({}) is None
