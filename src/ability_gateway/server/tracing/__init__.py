"""Traces (OpenTelemetry), optional: the extra ``ability-gateway[otel]``.

What is traced, one span each, all in the trace of the invocation that started the task:

    HTTP {method} {route}   (server)    every request (``TracingMiddleware``); a caller's
                                        W3C ``traceparent``/``tracestate`` is its parent
      task.step             (internal)  each step of a task's job (``tasks/steps.py``), inline
                                        in the request or later by a runner
        coze.{operation}    (client)    each HTTP call to Coze (``workflow.run``,
                                        ``workflow.submit``, ``workflow.history``); the
                                        request carries our ``traceparent``
      callback.attempt      (client)    each HTTP attempt of the task's callback; the
                                        request carries our ``traceparent``

A task is accepted in one request and worked on later, perhaps by another node: the request
span's context is stored with the task (``tasks.traceparent``, written in the accept
transaction) and is the parent of the task's steps run by a runner and of its callback
attempts (a manual redelivery too).

**On or off**, decided once per process start (:func:`configure`, from the lifespan):

    GATEWAY_OTEL_ENABLED=false  off
    GATEWAY_OTEL_ENABLED=true   on, if opentelemetry-sdk is importable (else a warning, off)
    unset (the default)         on only if opentelemetry-sdk is importable *and* the standard
                                OTEL_* variables name an exporter: OTEL_TRACES_EXPORTER
                                (other than ``none``), OTEL_EXPORTER_OTLP_ENDPOINT or
                                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT

Off is the default because an installed SDK with nowhere to send spans would only cost.
When on, a tracer provider that the host process already installed (``opentelemetry-
instrument``, or a test) is used as it is; otherwise the gateway builds one: the exporter
named by OTEL_TRACES_EXPORTER (default ``otlp``: OTLP over HTTP/protobuf, or gRPC when
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL is ``grpc``, its endpoint and
headers from the exporter's own OTEL_* variables), a batch processor, the sampler of
OTEL_TRACES_SAMPLER (default: parent-based, always on), and ``service.name`` from
OTEL_SERVICE_NAME (default ``ability-gateway``).

Off, nothing here imports OpenTelemetry: every function below is one check of the module's
``_impl`` and returns a shared no-op; no ``traceparent`` is stored, and none is sent to Coze
or to a callback receiver (a caller's ``callbackHeaders`` are sent as given). FastAPI's own
request tracing (recent versions trace from any global tracer provider) is turned off, so
this switch alone decides. The flag is per process: the last gateway started in it decides.
On, a ``traceparent``/``tracestate`` in a caller's ``callbackHeaders`` is replaced by ours.

Attributes never hold a secret: no token, no callback header value, no URL path or query of
a callback (only its host).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ability_gateway.server.tracing.base import NO_SPAN, AttributeValue, Span, SpanKind

if TYPE_CHECKING:
    from ability_gateway.server.config import Settings
    from ability_gateway.server.tracing._otel import Tracing

logger = logging.getLogger(__name__)

__all__ = [
    "NO_SPAN",
    "AttributeValue",
    "Span",
    "SpanKind",
    "TracingMiddleware",
    "configure",
    "current_traceparent",
    "enabled",
    "fastapi_options",
    "inject",
    "shutdown",
    "span",
]

EXPORTER_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


_NO_SPAN_CONTEXT: contextlib.nullcontext[Span] = contextlib.nullcontext(NO_SPAN)
# The tracing in force; None (off) keeps every call below to one check of it.
_impl: Tracing | None = None


def enabled() -> bool:
    return _impl is not None


def sdk_available() -> bool:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


def exporter_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard OTEL_* variables name somewhere to send spans."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in EXPORTER_VARIABLES)


def configure(settings: Settings) -> bool:
    """Turn tracing on or off for this process (see the module docstring); True when on."""
    global _impl
    wanted = settings.otel_enabled
    if wanted is None:
        wanted = exporter_configured() and sdk_available()
    elif wanted and not sdk_available():
        logger.warning(
            "GATEWAY_OTEL_ENABLED is true but opentelemetry-sdk is not installed "
            "(pip install 'ability-gateway[otel]'): tracing stays off"
        )
        wanted = False
    if not wanted:
        _impl = None
        return False
    from ability_gateway.server.tracing._otel import Tracing

    _impl = Tracing.from_environment()
    logger.info("tracing on: %s", _impl.describe())
    return True


def shutdown() -> None:
    """Flush and stop what :func:`configure` built (a provider it did not build is left)."""
    global _impl
    if _impl is not None:
        _impl.shutdown()
        _impl = None


def span(
    name: str,
    attributes: Mapping[str, AttributeValue | None] | None = None,
    *,
    parent: str | None = None,
    kind: SpanKind = "internal",
) -> contextlib.AbstractContextManager[Span]:
    """A span around a block, current inside it. ``parent``: a stored ``traceparent`` to
    continue (None, or one that does not parse: the current context's span)."""
    if _impl is None:
        return _NO_SPAN_CONTEXT
    return _impl.span(name, attributes, parent, kind)


def inject(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with the current span's ``traceparent`` (and ``tracestate``), replacing any
    of those names already there; unchanged when tracing is off."""
    if _impl is not None:
        _impl.inject(headers)
    return headers


def current_traceparent() -> str | None:
    """The current span's context as a W3C ``traceparent`` (what a task stores), or None."""
    if _impl is None:
        return None
    return _impl.current_traceparent()


def fastapi_options() -> dict[str, Any]:
    """``FastAPI(**these)``: its own request tracing off. Recent FastAPI versions trace every
    request whenever a global tracer provider is set, whatever this gateway's switch says;
    ``TracingMiddleware`` makes the request's span instead, only when tracing is on."""
    from fastapi import FastAPI

    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False}}
    return {}


class TracingMiddleware:
    """The request's span (a pure ASGI middleware; off, one check per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        impl = _impl
        if impl is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await impl.serve(self.app, scope, receive, send)
