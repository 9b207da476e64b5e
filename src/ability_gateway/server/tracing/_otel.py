"""Tracing with OpenTelemetry: imported only when tracing is on (``tracing.configure``).

The API does the spans and the W3C propagation; the SDK builds the provider when the host
process did not install one.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ability_gateway import __version__
from ability_gateway.server.http import current_request_id
from ability_gateway.server.tracing.base import AttributeValue, Span
from ability_gateway.server.tracing.base import SpanKind as KindName

logger = logging.getLogger(__name__)

TRACER_NAME = "ability_gateway"
_KINDS = {"internal": SpanKind.INTERNAL, "server": SpanKind.SERVER, "client": SpanKind.CLIENT}
_PROPAGATED = frozenset({"traceparent", "tracestate"})
_PROPAGATOR = TraceContextTextMapPropagator()


class _Recording(Span):
    __slots__ = ("_span",)
    recording = True

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        for key, value in attributes.items():
            if value is not None:
                self._span.set_attribute(key, value)

    def fail(self, description: str) -> None:
        self._span.set_status(Status(StatusCode.ERROR, description))


def _clean(attributes: Mapping[str, AttributeValue | None] | None) -> dict[str, AttributeValue]:
    return {k: v for k, v in (attributes or {}).items() if v is not None}


def _exporter(name: str) -> SpanExporter | None:
    """The exporter OTEL_TRACES_EXPORTER names, from the packages' entry points (the SDK's
    own way of finding them); None when its package is not installed."""
    if name == "otlp":
        protocol = (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()
        name = "otlp_proto_grpc" if protocol == "grpc" else "otlp_proto_http"
    found = importlib.metadata.entry_points(group="opentelemetry_traces_exporter", name=name)
    for entry in found:
        exporter: SpanExporter = entry.load()()
        return exporter
    return None


def _resource() -> Resource:
    attributes: dict[str, str] = {"service.version": __version__}
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if not named:
        attributes["service.name"] = "ability-gateway"
    return Resource.create(attributes)


class Tracing:
    """The tracer in force, and the provider this process built for it (if it did)."""

    def __init__(self, provider: trace.TracerProvider, owned: TracerProvider | None) -> None:
        self.provider = provider
        self.owned = owned
        self.tracer = provider.get_tracer(TRACER_NAME, __version__)

    @classmethod
    def from_environment(cls) -> Tracing:
        installed = trace.get_tracer_provider()
        if isinstance(installed, TracerProvider) and not getattr(
            installed, "_gateway_shut_down", False
        ):
            return cls(installed, None)  # the host process's (opentelemetry-instrument, a test)
        provider = TracerProvider(resource=_resource())
        names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
        for name in (n.strip().lower() for n in names.split(",")):
            if not name or name == "none":
                continue
            exporter = _exporter(name)
            if exporter is None:
                logger.warning(
                    "tracing: no installed exporter %r (for OTLP: pip install "
                    "'ability-gateway[otel]'); its spans are dropped",
                    name,
                )
                continue
            provider.add_span_processor(BatchSpanProcessor(exporter))
        if isinstance(installed, trace.ProxyTracerProvider):
            # Nobody set one yet: other libraries' instrumentation joins ours.
            trace.set_tracer_provider(provider)
        return cls(provider, provider)

    def describe(self) -> str:
        return "the process's tracer provider" if self.owned is None else "exporting per OTEL_*"

    def shutdown(self) -> None:
        if self.owned is not None:
            self.owned.shutdown()
            # A later gateway in this process builds a new one (this one stays the global).
            self.owned._gateway_shut_down = True  # type: ignore[attr-defined]

    def span(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue | None] | None,
        parent: str | None,
        kind: KindName,
    ) -> AbstractContextManager[Span]:
        return self._span(name, _clean(attributes), parent, _KINDS[kind])

    @contextmanager
    def _span(
        self,
        name: str,
        attributes: dict[str, AttributeValue],
        parent: str | None,
        kind: SpanKind,
    ) -> Iterator[Span]:
        context = None
        if parent:
            extracted = _PROPAGATOR.extract({"traceparent": parent})
            if trace.get_current_span(extracted).get_span_context().is_valid:
                context = extracted
        with self.tracer.start_as_current_span(
            name, context=context, kind=kind, attributes=attributes
        ) as span:
            yield _Recording(span)

    def inject(self, headers: dict[str, str]) -> None:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        if not carrier:
            return
        for key in [k for k in headers if k.lower() in _PROPAGATED]:
            del headers[key]
        headers.update(carrier)

    def current_traceparent(self) -> str | None:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    async def serve(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        parent = _PROPAGATOR.extract(carrier) if carrier else context_api.Context()
        method = scope.get("method", "")
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope.get("path", ""),
            "gateway.request_id": current_request_id() or None,
        }
        with self.tracer.start_as_current_span(
            f"HTTP {method}", context=parent, kind=SpanKind.SERVER, attributes=_clean(attributes)
        ) as span:

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
                await send(message)

            try:
                await app(scope, receive, send_traced)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str):
                    span.update_name(f"HTTP {method} {route}")
                    span.set_attribute("http.route", route)
