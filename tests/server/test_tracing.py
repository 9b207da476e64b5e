"""Traces (server/tracing/): one trace from a caller's ``traceparent`` through the request,
the task's steps, its Coze calls and its callback attempt, with the context sent on to Coze
and to the callback receiver; a new trace without one; and nothing at all when off.

The spans go to opentelemetry-sdk's ``InMemorySpanExporter`` through a ``SimpleSpanProcessor``
on the process's tracer provider (which the gateway uses when one is installed). Coze is a
loopback receiver answering as Coze does, so the headers of its requests can be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from ability_gateway.server import tracing
from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import create_token
from ability_gateway.server.models import tasks
from ability_gateway.server.state import GatewayState
from tests.conftest import make_settings
from tests.support import Receiver

SRC = Path(__file__).resolve().parents[2] / "src"
PROMPT = "/api/abilities/ability_coze_prompt_extract/invoke"
INVOKE_ROUTE = "HTTP POST /api/abilities/{ability_id}/invoke"
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
# How Coze answers a synchronous run (the text ability's End node: {"output": ...}).
COZE_ANSWER = {
    "code": 0,
    "msg": "Success",
    "data": '{"output": "a watercolour of a lake"}',
    "execute_id": "7600000000000000001",
    "debug_url": "https://www.coze.cn/work_flow?execute_id=7600000000000000001",
    "usage": {"input_count": 10, "output_count": 20, "token_count": 30},
    "detail": {"logid": "20261201000000LOGID"},
}


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    installed = trace.get_tracer_provider()
    if isinstance(installed, TracerProvider):
        provider = installed
    else:
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory
    memory.shutdown()  # a processor cannot be removed: it drops what comes later


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    exporter.clear()
    return exporter


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path, coze_url: str, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], GatewayState]]:
    settings = make_settings(
        tmp_path, coze_url, runner_poll_seconds=0.05, sweep_seconds=0.2, **overrides
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: GatewayState = app.state.gateway
        created = await create_token(state.db, "tracing")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=30
        ) as client:
            yield client, {"Authorization": f"Bearer {created.token}"}, state


def header(request: dict[str, object], name: str) -> str | None:
    headers = request["headers"]
    assert isinstance(headers, dict)
    found = [v for k, v in headers.items() if k.lower() == name]
    assert len(found) <= 1, headers
    return found[0] if found else None


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def finished_spans(memory: InMemorySpanExporter, name: str) -> tuple[ReadableSpan, ...]:
    """The spans once one named ``name`` has ended (a span ends just after its HTTP call)."""
    for _ in range(200):
        got = memory.get_finished_spans()
        if named(got, name):
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {name} span among {[s.name for s in got]}")


def traceparent_of(span: ReadableSpan) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def stored_traceparent(state: GatewayState, task_id: str) -> str | None:
    async with state.db.read() as conn:
        row = await conn.execute(select(tasks.c.traceparent).where(tasks.c.id == task_id))
        value: str | None = row.scalar_one()
        return value


async def test_one_trace_runs_from_the_callers_traceparent_to_the_callback(
    tmp_path: Path, sample_image: str, spans: InMemorySpanExporter
) -> None:
    with Receiver(default=(200, COZE_ANSWER, 0.0)) as coze, Receiver() as callbacks:
        coze_url = coze.url.removesuffix("/callback")
        async with gateway(tmp_path, coze_url, otel_enabled=True) as (client, auth, state):
            assert tracing.enabled()
            response = await client.post(
                PROMPT,
                json={
                    "inputs": {"url": sample_image},
                    "callbackUrl": callbacks.url,
                    # Ours replaces a caller's: the callback is sent in the task's trace.
                    "callbackHeaders": {"Traceparent": f"00-{'f' * 32}-{'e' * 16}-01"},
                },
                # Accepted now, run later by the runner: the stored context carries the trace.
                headers={**auth, "traceparent": CALLER_TRACEPARENT, "Prefer": "respond-async"},
            )
            assert response.status_code == 202, response.text
            task_id = response.json()["metadata"]["taskId"]
            (callback,) = await callbacks.wait(1)
            got = await finished_spans(spans, "callback.attempt")
            stored = await stored_traceparent(state, task_id)

    (request,) = named(got, INVOKE_ROUTE)
    (step,) = named(got, "task.step")
    (call,) = named(got, "coze.workflow.run")
    (attempt,) = named(got, "callback.attempt")
    # One trace, the caller's: request ← caller; step, callback ← request (stored); Coze ← step.
    assert {s.context.trace_id for s in (request, step, call, attempt)} == {int(CALLER_TRACE, 16)}
    assert request.parent is not None
    assert request.parent.is_remote
    assert parent_id(request) == int(CALLER_SPAN, 16)
    assert stored == traceparent_of(request)
    assert parent_id(step) == request.context.span_id
    assert parent_id(call) == step.context.span_id
    assert parent_id(attempt) == request.context.span_id
    # What was sent on: Coze got the Coze call's context, the receiver the attempt's.
    (coze_request,) = coze.requests
    assert header(coze_request, "traceparent") == traceparent_of(call)
    assert header(callback, "traceparent") == traceparent_of(attempt)

    assert request.kind == trace.SpanKind.SERVER
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/api/abilities/{ability_id}/invoke"
    assert request.attributes["http.response.status_code"] == 202
    assert request.attributes["gateway.request_id"] == response.headers["x-request-id"]
    step_attributes = dict(step.attributes or {})
    assert isinstance(step_attributes.pop("gateway.job.id"), int)
    assert step_attributes == {
        "gateway.task.id": task_id,
        "gateway.ability.id": "ability_coze_prompt_extract",
        "gateway.task.phase": "start",
        "gateway.executor.id": "default",
        "gateway.job.step": 1,
        "gateway.step.inline": False,
        "gateway.step.result": "done",
    }
    assert call.kind == trace.SpanKind.CLIENT
    assert dict(call.attributes or {}) == {
        "gateway.executor.id": "default",
        "coze.operation": "workflow.run",
        "http.response.status_code": 200,
        "coze.code": 0,
        "coze.logid": "20261201000000LOGID",
        "coze.execute_id": "7600000000000000001",
        "gateway.coze.outcome": "succeeded",
    }
    assert attempt.kind == trace.SpanKind.CLIENT
    assert attempt.attributes is not None
    assert attempt.attributes["gateway.task.id"] == task_id
    assert str(attempt.attributes["gateway.delivery.id"]).startswith("msg_")
    assert attempt.attributes["gateway.callback.attempt"] == 1
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.attributes["server.address"] == "127.0.0.1"
    assert all(s.status.is_ok for s in (request, step, call, attempt))


@pytest.mark.parametrize("caller", [None, "not-a-traceparent"])
async def test_an_invoke_without_a_traceparent_starts_a_new_trace(
    tmp_path: Path, sim_url: str, sample_image: str, spans: InMemorySpanExporter, caller: str | None
) -> None:
    headers = {} if caller is None else {"traceparent": caller}
    async with gateway(tmp_path, sim_url, otel_enabled=True) as (client, auth, state):
        response = await client.post(
            PROMPT, json={"inputs": {"url": sample_image}}, headers={**auth, **headers}
        )
        assert response.status_code == 200, response.text
        task_id = response.json()["metadata"]["taskId"]
        got = await finished_spans(spans, INVOKE_ROUTE)
        stored = await stored_traceparent(state, task_id)

    (request,) = named(got, INVOKE_ROUTE)
    (step,) = named(got, "task.step")
    (call,) = named(got, "coze.workflow.run")
    assert request.parent is None  # a root: the trace starts here
    assert request.context.trace_id != int(CALLER_TRACE, 16)
    assert {s.context.trace_id for s in (step, call)} == {request.context.trace_id}
    # Run inline, in the request: the request's span is the step's parent.
    assert parent_id(step) == request.context.span_id
    assert step.attributes is not None
    assert step.attributes["gateway.step.inline"] is True
    assert parent_id(call) == step.context.span_id
    assert stored == traceparent_of(request)


async def test_with_tracing_off_nothing_breaks_and_no_span_is_made(
    tmp_path: Path, sample_image: str, spans: InMemorySpanExporter
) -> None:
    # A tracer provider is installed (the fixture's), and still: off is off.
    with Receiver(default=(200, COZE_ANSWER, 0.0)) as coze, Receiver() as callbacks:
        coze_url = coze.url.removesuffix("/callback")
        async with gateway(tmp_path, coze_url, otel_enabled=False) as (client, auth, state):
            assert not tracing.enabled()
            response = await client.post(
                PROMPT,
                json={"inputs": {"url": sample_image}, "callbackUrl": callbacks.url},
                headers={**auth, "traceparent": CALLER_TRACEPARENT, "Prefer": "respond-async"},
            )
            assert response.status_code == 202, response.text
            task_id = response.json()["metadata"]["taskId"]
            (callback,) = await callbacks.wait(1)
            stored = await stored_traceparent(state, task_id)
            task = await client.get(f"/api/ability_tasks/{task_id}", headers=auth)

    assert task.json()["status"] == "succeeded"
    assert stored is None
    (coze_request,) = coze.requests
    assert header(coze_request, "traceparent") is None
    assert header(callback, "traceparent") is None
    await asyncio.sleep(0.1)
    assert spans.get_finished_spans() == ()


def test_by_default_tracing_is_on_only_when_an_exporter_is_configured() -> None:
    assert not tracing.exporter_configured({})
    assert not tracing.exporter_configured({"OTEL_SERVICE_NAME": "gw"})
    assert not tracing.exporter_configured({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.exporter_configured(
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    )
    assert tracing.exporter_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.exporter_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318"})
    assert tracing.exporter_configured({"OTEL_TRACES_EXPORTER": "console"})


def test_off_every_helper_is_a_no_op() -> None:
    tracing.shutdown()
    assert not tracing.enabled()
    with tracing.span("task.step", {"gateway.task.id": "task_x"}) as traced:
        assert traced is tracing.NO_SPAN
        assert not traced.recording
        traced.set({"a": 1})
        traced.fail("nothing happens")
    headers = {"Authorization": "Bearer x", "traceparent": CALLER_TRACEPARENT}
    assert tracing.inject(headers) == {
        "Authorization": "Bearer x",
        "traceparent": CALLER_TRACEPARENT,
    }
    assert tracing.current_traceparent() is None


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter (its own global tracer provider), from this checkout."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GATEWAY_OTEL"))}
    environ["PYTHONPATH"] = os.pathsep.join([str(SRC), environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**environ, **env},
        check=False,
    )


def test_an_exporter_named_by_otel_variables_turns_tracing_on(tmp_path: Path) -> None:
    done = run_python(
        """
        from ability_gateway.server import tracing
        from ability_gateway.server.config import Settings

        assert tracing.configure(Settings(_env_file=None))
        with tracing.span("task.step", {"gateway.task.id": "task_1"}):
            pass
        tracing.shutdown()
        """,
        tmp_path,
        OTEL_TRACES_EXPORTER="console",
        OTEL_SERVICE_NAME="gateway-under-test",
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "task.step"' in done.stdout
    assert '"gateway.task.id": "task_1"' in done.stdout
    assert '"service.name": "gateway-under-test"' in done.stdout


def test_without_the_sdk_the_gateway_serves_with_tracing_off(tmp_path: Path) -> None:
    done = run_python(
        """
        import sys

        sys.modules["opentelemetry.sdk"] = None  # as if the otel extra were not installed
        from fastapi.testclient import TestClient

        from ability_gateway.server import tracing
        from ability_gateway.server.app import create_app
        from ability_gateway.server.config import Settings

        app = create_app(Settings(_env_file=None, data_dir=".", otel_enabled=True))
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
            assert not tracing.enabled()
        print("served")
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "served" in done.stdout
    assert "opentelemetry-sdk is not installed" in done.stderr
