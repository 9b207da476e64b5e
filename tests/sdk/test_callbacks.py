"""verify_callback against Standard Webhooks signatures, and the deduplicator."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from ability_gateway import (
    CallbackDeduplicator,
    CallbackPayload,
    CallbackVerificationError,
    verify_callback,
)
from ability_gateway.server.callbacks.sender import sign

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()
NOW = 1_767_225_600.0

BODY = json.dumps(
    {
        "requestId": "req_1",
        "taskId": "task_1",
        "abilityId": "ability_coze_pattern_extract",
        "status": "succeeded",
        "durationMs": 60000,
        "texts": ["花纹提取完成"],
        "images": [
            {"ossUrl": "https://gw/media/a.png", "sourceUrl": "https://coze/a.png", "type": "image"}
        ],
        "videos": [],
        "assets": [],
        "metadata": {"model": "coze", "state": "completed", "taskId": "task_1"},
        "errorMessage": None,
        "errorCode": None,
    },
    ensure_ascii=False,
    separators=(",", ":"),
)


def signed(
    body: str = BODY, *, key: bytes = KEY, at: float = NOW, msg_id: str = "dlv_1"
) -> dict[str, str]:
    """Standard Webhooks headers, computed by hand."""
    content = f"{msg_id}.{int(at)}.{body}".encode()
    signature = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at)),
        "webhook-signature": f"v1,{signature}",
    }


def test_a_signed_callback_gives_the_typed_payload() -> None:
    payload = verify_callback(BODY.encode(), signed(), SECRET, now=NOW)
    assert isinstance(payload, CallbackPayload)
    assert (payload.task_id, payload.status, payload.duration_ms) == ("task_1", "succeeded", 60000)
    assert payload.texts == ["花纹提取完成"]
    assert payload.images[0].oss_url == "https://gw/media/a.png"
    assert payload.error_message is None
    assert payload.error_code is None
    assert payload.webhook_id == "dlv_1"


def test_the_servers_own_signature_verifies() -> None:
    headers = sign(SECRET, "dlv_server", BODY, datetime.fromtimestamp(NOW, UTC))
    payload = verify_callback(BODY, headers, SECRET, now=NOW + 10)
    assert payload.webhook_id == "dlv_server"
    assert payload.request_id == "req_1"


def test_the_current_time_is_the_default() -> None:
    at = time.time()
    assert verify_callback(BODY, signed(at=at), SECRET).task_id == "task_1"


def test_a_tampered_body_is_refused() -> None:
    tampered = BODY.replace("succeeded", "failed")
    with pytest.raises(CallbackVerificationError, match="signature does not match"):
        verify_callback(tampered, signed(), SECRET, now=NOW)


def test_another_secret_is_refused() -> None:
    with pytest.raises(CallbackVerificationError, match="signature does not match"):
        verify_callback(BODY, signed(), OTHER_SECRET, now=NOW)


def test_an_old_timestamp_is_refused_even_when_signed() -> None:
    with pytest.raises(CallbackVerificationError, match="301 s old"):
        verify_callback(BODY, signed(), SECRET, now=NOW + 301)
    assert verify_callback(BODY, signed(), SECRET, now=NOW + 301, tolerance=600).task_id


def test_a_future_timestamp_is_refused() -> None:
    with pytest.raises(CallbackVerificationError, match="in the future"):
        verify_callback(BODY, signed(at=NOW + 3600), SECRET, now=NOW)


def test_a_timestamp_that_is_not_a_number_is_refused() -> None:
    headers = {**signed(), "webhook-timestamp": "yesterday"}
    with pytest.raises(CallbackVerificationError, match="not a number"):
        verify_callback(BODY, headers, SECRET, now=NOW)


@pytest.mark.parametrize("case", [str.title, str.upper])
def test_header_names_are_case_insensitive(case: Any) -> None:
    headers = {case(name): value for name, value in signed().items()}
    assert verify_callback(BODY, headers, SECRET, now=NOW).webhook_id == "dlv_1"


def test_any_of_several_signatures_may_match() -> None:
    good = signed()["webhook-signature"]
    wrong = signed(key=b"x" * 32)["webhook-signature"]
    headers = {**signed(), "webhook-signature": f"v2,abc {wrong} {good}"}
    assert verify_callback(BODY, headers, SECRET, now=NOW).task_id == "task_1"
    headers["webhook-signature"] = f"{wrong} v2,{good.removeprefix('v1,')}"
    with pytest.raises(CallbackVerificationError):
        verify_callback(BODY, headers, SECRET, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_named(missing: str) -> None:
    headers = {k: v for k, v in signed().items() if k != missing}
    with pytest.raises(CallbackVerificationError, match=f"no {missing} header"):
        verify_callback(BODY, headers, SECRET, now=NOW)


def test_a_signed_body_that_is_not_a_callback_is_refused() -> None:
    with pytest.raises(CallbackVerificationError, match="not a callback payload"):
        verify_callback("[1, 2]", signed("[1, 2]"), SECRET, now=NOW)


def test_a_secret_that_is_not_whsec_base64_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a whsec_"):
        verify_callback(BODY, signed(), "whsec_***", now=NOW)


def test_the_deduplicator_remembers_ids() -> None:
    dedupe = CallbackDeduplicator()
    assert dedupe.seen("dlv_1") is False
    assert dedupe.seen("dlv_1") is True
    assert dedupe.seen("dlv_2") is False
    assert len(dedupe) == 2


def test_the_deduplicator_forgets_after_the_ttl() -> None:
    now = [100.0]
    dedupe = CallbackDeduplicator(ttl=60, clock=lambda: now[0])
    assert not dedupe.seen("dlv_1")
    now[0] += 59
    assert dedupe.seen("dlv_1")
    now[0] += 2
    assert not dedupe.seen("dlv_1")  # expired: recorded afresh
    assert dedupe.seen("dlv_1")


def test_the_deduplicator_keeps_at_most_max_size() -> None:
    dedupe = CallbackDeduplicator(max_size=2)
    for webhook_id in ("a", "b", "c"):
        assert not dedupe.seen(webhook_id)
    assert len(dedupe) == 2
    assert not dedupe.seen("a")  # the oldest went first
    assert dedupe.seen("c")


def test_forget_lets_a_retry_through() -> None:
    dedupe = CallbackDeduplicator()
    assert not dedupe.seen("dlv_1")
    dedupe.forget("dlv_1")  # handling failed: the gateway's retry should be handled
    assert not dedupe.seen("dlv_1")


def test_the_deduplicator_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="ttl"):
        CallbackDeduplicator(ttl=0)
    with pytest.raises(ValueError, match="max_size"):
        CallbackDeduplicator(max_size=0)
