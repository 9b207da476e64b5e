"""Logs: the JSON and text formats, a transition logged only once its transaction commits, a
request's line, and a whole run of a real gateway whose log holds every event and no secret."""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from ability_gateway.server.config import Settings
from ability_gateway.server.db import Database
from ability_gateway.server.logs import (
    JsonFormatter,
    TextFormatter,
    log_after_commit,
    log_context,
    log_event,
)
from tests.support import (
    Receiver,
    cli,
    database_env,
    database_url,
    free_port,
    gateway_process,
    simulator_process,
)

PROMPT = "/api/abilities/ability_coze_prompt_extract/invoke"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger of its own writing to a string (the root's handlers are left alone)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger(f"tests.logs.{secrets.token_hex(4)}")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log, stream, handler
    log.removeHandler(handler)


def test_a_json_line_holds_the_event_its_fields_and_its_context(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    log, stream, handler = captured
    handler.setFormatter(JsonFormatter())
    with log_context(taskId="task_1", ability="a"):
        log_event(log, "coze.call", logging.WARNING, executor="default", cozeCode=None, n=3)
    log.info("plain %s", "text")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first.pop("ts").endswith("Z")
    assert first == {
        "level": "WARNING",
        "logger": log.name,
        "event": "coze.call",
        "taskId": "task_1",
        "ability": "a",
        "executor": "default",
        "n": 3,
    }
    assert second["message"] == "plain text"
    assert "event" not in second


def test_a_json_line_keeps_an_exception_on_the_same_line(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    log, stream, handler = captured
    handler.setFormatter(JsonFormatter())
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    (line,) = stream.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_a_text_line_is_the_event_then_key_value_pairs(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    log, stream, handler = captured
    handler.setFormatter(TextFormatter())
    log_event(
        log, "request.end", method="POST", route="/api/x/{id}", status=200, error="a b", ok=True
    )
    line = stream.getvalue().strip()
    assert line.endswith(
        f'INFO {log.name}: request.end method=POST route=/api/x/{{id}} status=200 error="a b" '
        "ok=true"
    )


async def test_a_transition_is_logged_once_when_its_transaction_commits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(database_url() or f"sqlite+aiosqlite:///{tmp_path}/logs.db")
    log = logging.getLogger("tests.logs.commit")
    caplog.set_level(logging.INFO, logger=log.name)

    def write(conn: Any, name: str, fail: bool) -> None:
        conn.execute(text("SELECT 1"))
        log_after_commit(conn, log, "task.transition", taskId=name)
        assert not caplog.records, "logged before the commit"
        if fail:
            raise RuntimeError("rolled back")

    try:
        with pytest.raises(RuntimeError):
            await db.run_write(lambda conn: write(conn, "task_rolled_back", True))
        await db.run_write(lambda conn: write(conn, "task_committed", False))
    finally:
        await db.dispose()
    assert [getattr(r, "gateway_fields", None) for r in caplog.records] == [
        {"taskId": "task_committed"}
    ]


async def test_by_default_each_request_and_transition_is_a_readable_info_line(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sample_image: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ability_gateway")
    response = await client.post(
        PROMPT, json={"inputs": {"url": sample_image}}, headers={**auth, "X-Request-ID": "r-1"}
    )
    assert response.status_code == 200
    await client.get("/readyz")  # a probe's success: DEBUG, not in the INFO lines
    formatter = TextFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.levelno == logging.INFO]
    task_id = response.json()["metadata"]["taskId"]
    assert [line.split(": ", 1)[1].split(" ")[0] for line in lines] == [
        "task.transition",
        "coze.call",
        "task.transition",
        "request.end",
    ]
    assert f"task.transition requestId=r-1 taskId={task_id} " in lines[0]
    assert "status=running" in lines[0]
    assert f"taskId={task_id} " in lines[2]
    assert "status=succeeded" in lines[2]
    assert (
        "request.end requestId=r-1 method=POST route=/api/abilities/{ability_id}/invoke "
        "status=200 durationMs="
    ) in lines[3]


def test_the_defaults_are_text_with_one_line_a_request() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.log_format, settings.log_level, settings.access_log) == ("text", "INFO", True)


# --- a real gateway, end to end ------------------------------------------------------------


def _events(lines: list[dict[str, Any]], name: str, **match: object) -> list[dict[str, Any]]:
    return [
        line
        for line in lines
        if line.get("event") == name and all(line.get(k) == v for k, v in match.items())
    ]


def test_a_full_run_logs_every_event_as_json_and_no_secret(tmp_path: Path) -> None:
    pat = "pat_" + secrets.token_hex(16)
    header_value = "hv-" + secrets.token_hex(16)
    wrong_token = "agw_" + secrets.token_hex(16)
    with simulator_process("--token", pat) as sim_url:
        env = {
            "GATEWAY_DATA_DIR": str(tmp_path),
            "GATEWAY_COZE_BASE_URL": sim_url,
            "GATEWAY_COZE_API_TOKEN": pat,
            "GATEWAY_EGRESS_ALLOW": "127.0.0.0/8",
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_CALLBACK_RETRY_SCHEDULE": "0.2",
            "GATEWAY_RUNNER_POLL_SECONDS": "0.05",
            **database_env(),
        }
        created = cli("token", "create", "--name", "logs", "--json", env=env)
        assert created.returncode == 0, created.stderr
        token = json.loads(created.stdout)
        port = free_port()
        image = f"{sim_url}/files/samples/landscape.png"
        # The first callback attempt is refused (500), the second delivered.
        with (
            Receiver(script=[(500, {"code": 1}, 0.0)]) as receiver,
            gateway_process(env, tmp_path, port) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            auth = {"Authorization": f"Bearer {token['token']}"}
            sync = client.post(
                PROMPT,
                json={
                    "inputs": {"url": image},
                    "callbackUrl": receiver.url,
                    "callbackHeaders": {"X-Secret": header_value},
                },
                headers={**auth, "X-Request-ID": "req-logs-sync"},
            )
            assert sync.status_code == 200, sync.text
            sync_task = sync.json()["metadata"]["taskId"]
            queued = client.post(
                PROMPT,
                json={"inputs": {"url": image}},
                headers={**auth, "Prefer": "respond-async", "X-Request-ID": "req-logs-async"},
            )
            assert queued.status_code == 202, queued.text
            async_task = queued.json()["metadata"]["taskId"]
            refused = client.get(
                "/api/abilities", headers={"Authorization": f"Bearer {wrong_token}"}
            )
            assert refused.status_code == 401
            deadline = time.monotonic() + 30
            while client.get(f"/api/ability_tasks/{async_task}", headers=auth).json()[
                "status"
            ] not in ("succeeded", "failed"):
                assert time.monotonic() < deadline, "the queued task did not end"
                time.sleep(0.05)
            calls = receiver.wait_for(2)
            assert calls[0]["headers"]["X-Secret"] == header_value  # it was sent, not logged
            deadline = time.monotonic() + 10
            while '"attempt":2' not in (log_path := tmp_path / f"gateway-{port}.log").read_text():
                assert time.monotonic() < deadline, "the second attempt was not logged"
                time.sleep(0.05)
    log_text = log_path.read_text(encoding="utf-8")

    for secret in (token["token"], token["callbackSecret"], pat, header_value, wrong_token):
        assert secret not in log_text
    lines = [json.loads(line) for line in log_text.splitlines()]  # every line is JSON
    assert all({"ts", "level", "logger"} <= line.keys() for line in lines)

    (invoke,) = _events(lines, "request.end", requestId="req-logs-sync")
    assert invoke["method"] == "POST"
    assert invoke["route"] == "/api/abilities/{ability_id}/invoke"
    assert invoke["status"] == 200
    assert invoke["tokenId"] == token["id"]
    assert invoke["ability"] == "ability_coze_prompt_extract"
    assert invoke["durationMs"] > 0
    assert _events(lines, "request.end", status=401, route="/api/abilities")

    (coze,) = _events(lines, "coze.call", taskId=sync_task)
    assert coze["requestId"] == "req-logs-sync"  # run inline, in the request
    assert coze["executor"] == "default"
    assert coze["operation"] == "workflow.run"
    assert (coze["httpStatus"], coze["cozeCode"], coze["outcome"]) == (200, 0, "succeeded")
    assert coze["logid"]
    assert coze["durationMs"] >= 0
    assert _events(lines, "coze.call", taskId=async_task)  # run by the runner

    def statuses(task_id: str) -> list[str]:
        return [e["status"] for e in _events(lines, "task.transition", taskId=task_id)]

    assert statuses(sync_task) == ["running", "succeeded"]
    assert statuses(async_task) == ["queued", "running", "succeeded"]
    (ended,) = _events(lines, "task.transition", taskId=sync_task, status="succeeded")
    assert ended["ability"] == "ability_coze_prompt_extract"
    assert ended["requestId"] == "req-logs-sync"

    attempts = _events(lines, "callback.attempt", taskId=sync_task)
    assert [(a["attempt"], a["receiverStatus"], a["outcome"]) for a in attempts] == [
        (1, 500, "retrying"),
        (2, 200, "delivered"),
    ]
    assert all(a["receiverHost"] == "127.0.0.1" and a["deliveryId"] for a in attempts)
