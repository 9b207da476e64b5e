"""One HTTP attempt of a delivery: sign, POST through the egress guard, judge the answer.

Success is HTTP 2xx and, when the answer is a JSON object with a ``code``, ``code == 0``
(spec §3.4.4). 410 means the receiver is gone: no more retries. Redirects are failures.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from sqlalchemy.engine import RowMapping
from standardwebhooks import Webhook

from ability_gateway import __version__
from ability_gateway.server.egress import EgressRefused, SafeClient, describe
from ability_gateway.server.logs import log_event
from ability_gateway.server.tracing import Span, span
from ability_gateway.server.tracing import inject as inject_trace

logger = logging.getLogger(__name__)

USER_AGENT = f"ability-gateway/{__version__} (callbacks)"
EXCERPT_BYTES = 1024


@dataclass(frozen=True, slots=True)
class AttemptResult:
    ok: bool
    gone: bool
    http_status: int | None
    error: str | None
    excerpt: str | None
    duration_ms: int


def sign(
    secret: str,
    msg_id: str,
    body: str,
    when: datetime | None = None,
    previous: str | None = None,
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt. With ``previous`` (a secret rotation's
    overlap) the header carries both signatures, space-separated, the new one first: a
    receiver that knows either secret verifies it."""
    when = when or datetime.now(UTC)
    signatures = [Webhook(secret).sign(msg_id, when, body)]
    if previous:
        signatures.append(Webhook(previous).sign(msg_id, when, body))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def _judge(status: int, body: bytes, truncated: bool) -> tuple[bool, str | None]:
    if not 200 <= status < 300:
        if 300 <= status < 400:
            return False, f"HTTP {status}: redirects are not followed"
        return False, f"HTTP {status}"
    text = body.strip()
    try:
        answer: Any = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        if text[:1] in (b"{", b"[") and truncated:
            # A JSON answer too big to read whole: its code cannot be checked.
            return False, "the receiver's JSON answer is larger than the cap"
        return True, None  # not JSON: the status decides
    if isinstance(answer, dict) and "code" in answer:
        code = answer["code"]
        if (type(code) is int and code == 0) or code == "0":
            return True, None
        return False, f"the receiver answered code {str(code)[:40]}"
    return True, None


def safe_text(data: bytes) -> str:
    """An answer as storable text: invalid UTF-8 replaced, NUL escaped (PostgreSQL)."""
    return data.decode("utf-8", errors="replace").replace("\x00", "\\u0000")


async def attempt(client: SafeClient, delivery: RowMapping, *, timeout: float) -> AttemptResult:
    """One attempt, in a span of the task's trace (``traceparent``, stored with the task)."""
    attributes = {"gateway.delivery.id": delivery["id"], "gateway.task.id": delivery["task_id"]}
    with span(
        "callback.attempt", attributes, parent=delivery.get("traceparent"), kind="client"
    ) as traced:
        result = await _attempt(client, delivery, timeout)
        _trace(traced, delivery, result)
        return result


def log_attempt(
    delivery: RowMapping, number: int, result: AttemptResult, outcome: str, *, manual: bool
) -> None:
    """``callback.attempt``: the receiver's host and answer status, never its URL's path or
    query, the headers sent (a caller's values, the signature) or either body. ``outcome``
    is the delivery's state after it (``retrying`` while attempts remain); a delivery that
    gives up (``exhausted``, ``gone``) is a WARNING."""
    level = logging.WARNING if outcome in ("exhausted", "gone") else logging.INFO
    log_event(
        logger,
        "callback.attempt",
        level,
        deliveryId=delivery["id"],
        taskId=delivery["task_id"],
        attempt=number,
        manual=manual or None,
        receiverHost=urlsplit(delivery["url"]).hostname,
        receiverStatus=result.http_status,
        outcome=outcome,
        durationMs=result.duration_ms,
        error=result.error,
    )


def _trace(traced: Span, delivery: RowMapping, result: AttemptResult) -> None:
    if not traced.recording:
        return
    traced.set(
        {
            # The receiver's host only: a callback URL's path or query may hold a secret.
            "server.address": urlsplit(delivery["url"]).hostname,
            "gateway.callback.attempt": delivery["attempts"] + 1,
            "http.response.status_code": result.http_status,
        }
    )
    if not result.ok:
        traced.fail(result.error or "the receiver refused it")


async def _attempt(client: SafeClient, delivery: RowMapping, timeout: float) -> AttemptResult:
    body = delivery["body"]
    headers = inject_trace(
        {
            **(delivery["headers"] or {}),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **sign(
                delivery["callback_secret"],
                delivery["id"],
                body,
                previous=delivery["previous_callback_secret"],
            ),
        }
    )
    started = time.perf_counter()
    try:
        response = await client.post(
            delivery["url"], body=body.encode(), headers=headers, timeout=timeout
        )
    except (EgressRefused, aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return AttemptResult(
            False, False, None, describe(exc).replace("\x00", "\\u0000"), None, _ms(started)
        )
    ok, error = _judge(response.status, response.body, response.truncated)
    excerpt = safe_text(response.body[:EXCERPT_BYTES])
    return AttemptResult(ok, response.status == 410, response.status, error, excerpt, _ms(started))


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
