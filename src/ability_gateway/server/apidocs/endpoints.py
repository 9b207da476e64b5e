"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), from assets installed with the package.

FastAPI's own pages load their JavaScript from a CDN, which leaves them blank on a network
without internet. These pages reference nothing but this server::

    /docs, /redoc                       the HTML (not in the OpenAPI document)
    /docs/assets/swagger-ui-X.Y.Z/…     the vendored files (static/README.md: versions, licenses)
    /docs/assets/redoc-A.B.C/…
    /openapi.json                       the document both pages render

The version is in the asset paths, so they can be cached for long and an upgrade is a new URL.
A Content-Security-Policy keeps images on this server too (ReDoc's footer would fetch its logo
from its vendor; Swagger UI's validator badge is switched off).
"""

from __future__ import annotations

import os

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

SWAGGER_UI = "swagger-ui-5.35.0"
"""Directory of ``swagger-ui-dist`` under ``static/`` (and of its URLs)."""
REDOC = "redoc-2.5.4"
"""Directory of ``redoc`` under ``static/`` (and of its URLs)."""
ASSETS_PATH = "/docs/assets"

SWAGGER_UI_PARAMETERS = {
    # The token typed into "Authorize" survives a reload of the page.
    "persistAuthorization": True,
    "displayRequestDuration": True,
    # Swagger UI would send the document to validator.swagger.io for its badge.
    "validatorUrl": None,
}
# Images from this server or inline only: nothing on the pages reaches another host.
PAGE_POLICY = "img-src 'self' data:"
ASSET_CACHE = "public, max-age=604800"

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _openapi_url(request: Request) -> str:
    return _root(request) + (request.app.openapi_url or "/openapi.json")


def asset_url(request: Request, directory: str, name: str) -> str:
    """The path (no host) at which a vendored file is served."""
    return f"{_root(request)}{ASSETS_PATH}/{directory}/{name}"


def _page(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    return response


@router.get("/docs")
async def get_swagger_ui(request: Request) -> HTMLResponse:
    return _page(
        get_swagger_ui_html(
            openapi_url=_openapi_url(request),
            title=f"{request.app.title} – Swagger UI",
            swagger_js_url=asset_url(request, SWAGGER_UI, "swagger-ui-bundle.js"),
            swagger_css_url=asset_url(request, SWAGGER_UI, "swagger-ui.css"),
            swagger_favicon_url=asset_url(request, SWAGGER_UI, "favicon-32x32.png"),
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
    )


@router.get("/redoc")
async def get_redoc(request: Request) -> HTMLResponse:
    return _page(
        get_redoc_html(
            openapi_url=_openapi_url(request),
            title=f"{request.app.title} – ReDoc",
            redoc_js_url=asset_url(request, REDOC, "redoc.standalone.js"),
            redoc_favicon_url=asset_url(request, SWAGGER_UI, "favicon-32x32.png"),
            with_google_fonts=False,
        )
    )


class _VersionedAssets(StaticFiles):
    """Static files whose URLs carry their version: browsers may keep them for a week."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = ASSET_CACHE
        return response


def install_api_docs(app: FastAPI) -> None:
    """The two pages and their assets (create the app with ``docs_url=None, redoc_url=None``)."""
    app.include_router(router)
    app.mount(
        ASSETS_PATH,
        _VersionedAssets(packages=[("ability_gateway.server.apidocs", "static")]),
        name="apidocs-assets",
    )
