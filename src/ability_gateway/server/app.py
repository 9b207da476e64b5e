"""The gateway's ASGI application: lifespan, middleware, error handlers, routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from ability_gateway import __version__
from ability_gateway.server.abilities.catalog import Catalog
from ability_gateway.server.abilities.endpoints import router as abilities_router
from ability_gateway.server.admin.endpoints import router as admin_router
from ability_gateway.server.admin.schemas import Redeliver
from ability_gateway.server.apidocs.endpoints import install_api_docs
from ability_gateway.server.apidocs.examples import add_invoke_examples, example_image_url
from ability_gateway.server.auth.endpoints import router as tokens_router
from ability_gateway.server.auth.schemas import CreateToken, Rotate, UpdateToken
from ability_gateway.server.bodylimit import BodyLimitMiddleware
from ability_gateway.server.callbacks.endpoints import router as callbacks_router
from ability_gateway.server.callbacks.endpoints import webhooks as callbacks_webhooks
from ability_gateway.server.config import Settings, get_settings
from ability_gateway.server.console.admin.endpoints import router as console_admin_router
from ability_gateway.server.console.endpoints import router as console_router
from ability_gateway.server.console.pages import STATIC
from ability_gateway.server.errors import install_error_handlers
from ability_gateway.server.executors.endpoints import router as executors_router
from ability_gateway.server.health.endpoints import router as health_router
from ability_gateway.server.http import RequestIdMiddleware
from ability_gateway.server.input_guard import ControlCharacterGuard
from ability_gateway.server.lifecycle import gateway_state
from ability_gateway.server.logs import RequestLogMiddleware
from ability_gateway.server.media.endpoints import router as media_router
from ability_gateway.server.metrics.endpoints import router as metrics_router
from ability_gateway.server.openapi import finish_document
from ability_gateway.server.provider_callbacks.endpoints import router as provider_callbacks_router
from ability_gateway.server.tasks.endpoints import router as tasks_router
from ability_gateway.server.tasks.schemas import InvokeRequest
from ability_gateway.server.tracing import TracingMiddleware, fastapi_options
from ability_gateway.server.usage.endpoints import router as usage_router

logger = logging.getLogger(__name__)


# Request bodies read by hand (``jsonbody.read_model``), documented with their routes.
HAND_PARSED_BODIES: tuple[type[BaseModel], ...] = (
    InvokeRequest,
    CreateToken,
    UpdateToken,
    Rotate,
    Redeliver,
)


def _document_extra_schemas(app: FastAPI, catalog: Catalog, settings: Settings) -> None:
    """Bodies parsed by hand (to accept JSON under any Content-Type) still appear in OpenAPI,
    with an example request per ability."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                webhooks=app.webhooks.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in HAND_PARSED_BODIES:
                extra = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(extra.pop("$defs", {}))
                components[model.__name__] = extra
            app.openapi_schema = finish_document(schema)
            add_invoke_examples(app.openapi_schema, catalog.all(), example_image_url(settings))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # Load the catalog now: a broken catalog file fails the start, not the first request.
    catalog = Catalog.load(settings.catalog_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with gateway_state(settings, catalog, run_jobs=settings.runner_enabled) as state:
            app.state.gateway = state
            yield

    app = FastAPI(
        title="Ability Gateway",
        version=__version__,
        description="One stable, authenticated REST API over Coze workflows.",
        lifespan=lifespan,
        # Served from the package's own files instead of a CDN (apidocs).
        docs_url=None,
        redoc_url=None,
        **fastapi_options(),
    )
    _document_extra_schemas(app, catalog, settings)
    install_api_docs(app)
    install_error_handlers(app)
    # Added first, so it runs inside RequestIdMiddleware: its 413 carries the request id.
    app.add_middleware(BodyLimitMiddleware)
    # NUL and control characters in the path, query and headers: a 400 before any route.
    app.add_middleware(ControlCharacterGuard)
    # The request's span (when tracing is on), inside RequestIdMiddleware: it has the id.
    app.add_middleware(TracingMiddleware)
    if settings.access_log:
        # One `request.end` line a request, inside RequestIdMiddleware: it has the id.
        app.add_middleware(RequestLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(abilities_router)
    app.include_router(tasks_router)
    app.include_router(callbacks_router)
    app.webhooks.include_router(callbacks_webhooks)
    app.include_router(executors_router)
    app.include_router(tokens_router)
    app.include_router(admin_router)
    app.include_router(provider_callbacks_router)
    app.include_router(health_router)
    app.include_router(media_router)
    app.include_router(metrics_router)
    app.include_router(usage_router)
    if settings.console_enabled:
        app.include_router(console_router)
        app.include_router(console_admin_router)
        app.mount(STATIC, StaticFiles(packages=[("ability_gateway.server.console", "static")]))
    return app
