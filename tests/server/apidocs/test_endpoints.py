"""/docs and /redoc work offline: served over real HTTP from the package's own files."""

from __future__ import annotations

import json
import re
import zipfile
from importlib import resources
from pathlib import Path

import httpx

from ability_gateway.server.apidocs.endpoints import ASSETS_PATH, REDOC, SWAGGER_UI
from ability_gateway.server.openapi import SECURITY_SCHEME
from tests.server.conftest import LiveFactory
from tests.support import build_wheel

ROOT = Path(__file__).resolve().parents[3]
STATIC = resources.files("ability_gateway.server.apidocs") / "static"
PAGES = ("/docs", "/redoc")
# What each page needs, beside the document: the files a browser loads to draw it.
NEEDED = {
    "/docs": {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"},
    "/redoc": {"redoc.standalone.js", "favicon-32x32.png"},
}
CONTENT_TYPES = {
    ".js": r"^(text|application)/javascript\b",
    ".css": r"^text/css\b",
    ".png": r"^image/png$",
}


def references(html: str) -> list[str]:
    """Every URL a page makes its browser load: src, href, spec-url and Swagger UI's url."""
    return re.findall(r'(?:src|href|spec-url)="([^"]*)"', html) + re.findall(
        r"\burl: '([^']*)'", html
    )


async def test_docs_pages_reference_nothing_on_another_host(live: LiveFactory) -> None:
    async with live() as gw:
        for page in PAGES:
            answer = await gw.client.get(page)
            assert answer.status_code == 200, page
            assert answer.headers["content-type"].startswith("text/html")
            assert not re.search(r"https?:|//[a-z0-9]", answer.text, re.IGNORECASE), page
            refs = references(answer.text)
            assert "/openapi.json" in refs, page
            assert {ref.rsplit("/", 1)[-1] for ref in refs} >= NEEDED[page], page
            assert all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs


async def test_every_asset_a_page_references_answers_with_its_content_type(
    live: LiveFactory,
) -> None:
    async with live() as gw, httpx.AsyncClient(base_url=gw.url) as browser:  # no token
        for page in PAGES:
            html = (await browser.get(page)).text
            for ref in references(html):
                answer = await browser.get(ref)
                assert answer.status_code == 200, ref
                if ref == "/openapi.json":
                    assert answer.headers["content-type"] == "application/json"
                    continue
                assert ref.startswith(ASSETS_PATH + "/"), ref
                suffix = Path(ref).suffix
                assert re.match(CONTENT_TYPES[suffix], answer.headers["content-type"]), ref
                assert answer.headers["cache-control"] == "public, max-age=604800"
                packaged = STATIC.joinpath(*ref.removeprefix(ASSETS_PATH + "/").split("/"))
                assert answer.content == packaged.read_bytes(), ref


async def test_docs_pages_load_images_only_from_this_server(live: LiveFactory) -> None:
    async with live() as gw:
        for page in PAGES:
            answer = await gw.client.get(page)
            assert answer.headers["content-security-policy"] == "img-src 'self' data:"


async def test_swagger_ui_keeps_the_token_and_sends_the_document_nowhere(
    live: LiveFactory,
) -> None:
    async with live() as gw:
        html = (await gw.client.get("/docs")).text
    assert '"persistAuthorization": true' in html
    assert '"validatorUrl": null' in html


async def test_authorize_with_the_published_bearer_scheme_opens_the_api(
    live: LiveFactory,
) -> None:
    """What Swagger UI's Authorize does: `Authorization: Bearer <token>` on secured routes."""
    async with live() as gw:
        document = (await gw.client.get("/openapi.json")).json()
        scheme = document["components"]["securitySchemes"][SECURITY_SCHEME]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        listing = document["paths"]["/api/abilities"]["get"]
        assert listing["security"] == [{SECURITY_SCHEME: []}]
        token = gw.headers["Authorization"].removeprefix("Bearer ")
        without = await gw.client.get("/api/abilities")
        with_token = await gw.client.get(
            "/api/abilities", headers={"Authorization": f"Bearer {token}"}
        )
    assert without.status_code == 401
    assert with_token.status_code == 200


async def test_an_unknown_asset_is_404(live: LiveFactory) -> None:
    async with live() as gw:
        answer = await gw.client.get(f"{ASSETS_PATH}/{SWAGGER_UI}/no-such-file.js")
    assert answer.status_code == 404


def test_vendored_directories_hold_the_versions_they_are_named_for() -> None:
    for directory, package, license_name in (
        (SWAGGER_UI, "swagger-ui-dist", "Apache-2.0"),
        (REDOC, "redoc", "MIT"),
    ):
        manifest = json.loads(STATIC.joinpath(directory, "package.json").read_text("utf-8"))
        assert manifest["name"] == package
        assert directory.endswith("-" + manifest["version"])
        assert manifest["license"] == license_name
        assert STATIC.joinpath(directory, "LICENSE").is_file()


def test_the_wheel_ships_the_docs_assets(tmp_path: Path) -> None:
    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        names = set(wheel.namelist())
    shipped = {
        f"{SWAGGER_UI}/{name}"
        for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE")
    } | {f"{REDOC}/{name}" for name in ("redoc.standalone.js", "LICENSE")}
    prefix = "ability_gateway/server/apidocs/static/"
    assert {prefix + name for name in shipped} <= names
