"""Rendering console pages: the Jinja2 environment, the headers every page carries, and the
session a page is for.

Templates autoescape everything (a task's metadata holding ``<script>`` renders as text);
pages load scripts and styles only from ``/console/static`` (a Content-Security-Policy
without ``unsafe-inline`` scripts), images from this server (our media) or the storage's
public URL, and are never cached or framed.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from ability_gateway.server.console.forms import MAX_UPLOAD_BYTES
from ability_gateway.server.console.i18n import language_of, translator
from ability_gateway.server.console.sessions import COOKIE, ConsoleSession, Sessions
from ability_gateway.server.errors import GatewayError
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks.bodies import iso_time

STATIC = "/console/static"
HTMX = f"{STATIC}/htmx-2.0.11.min.js"
STYLE = f"{STATIC}/console.css"
SCRIPT = f"{STATIC}/console.js"

environment = Environment(
    loader=PackageLoader("ability_gateway.server.console", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def _as_json(text: Any) -> Any:
    """A text that is a JSON object or array (a tagging result), else None."""
    if not isinstance(text, str) or not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _when(ms: Any) -> str:
    return iso_time(int(ms)) if isinstance(ms, int) else ""


def _web(url: Any) -> str | None:
    """``url`` if it is an http(s) URL, else None: a link or image from Coze's answers
    (``debug_url``, an output's URL) never becomes a ``javascript:`` link."""
    if not isinstance(url, str) or url.startswith("//"):
        return None
    return url if url.startswith(("http://", "https://", "/")) else None


environment.filters["pretty"] = _pretty
environment.filters["web"] = _web
environment.filters["when"] = _when
environment.filters["as_json"] = _as_json


def _policy(gateway: GatewayState) -> str:
    images = ["'self'", "data:"]
    public = gateway.settings.storage_public_url
    if public:
        parts = urlsplit(public)
        images.append(f"{parts.scheme}://{parts.netloc}")
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src {' '.join(images)}; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def render(
    request: Request,
    gateway: GatewayState,
    template: str,
    session: ConsoleSession | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    lang = language_of(request)
    html = environment.get_template(template).render(
        t=translator(lang),
        lang=lang,
        session=session,
        csrf=session.csrf if session else "",
        path=request.url.path,
        htmx=HTMX,
        style=STYLE,
        script=SCRIPT,
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Content-Security-Policy"] = _policy(gateway)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def fragment(request: Request) -> bool:
    """An htmx request wants the fragment, a plain one the whole page."""
    return request.headers.get("hx-request") == "true"


def to_login() -> RedirectResponse:
    return RedirectResponse("/console/login", status_code=303)


async def session_of(request: Request, gateway: GatewayState) -> ConsoleSession | None:
    return await gateway.sessions.find(request.cookies.get(COOKIE))


def same_origin(request: Request) -> bool:
    """A state-changing form comes from a console page: its ``Origin`` (sent by browsers on
    every POST), when present, is this server."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


async def signed_in(request: Request, gateway: GatewayState) -> ConsoleSession | Response:
    session = await session_of(request, gateway)
    return to_login() if session is None else session


def refused(request: Request, gateway: GatewayState, session: ConsoleSession) -> HTMLResponse:
    return render(request, gateway, "message.html", session, 403, message_key="bad_form")


async def checked_form(
    request: Request, gateway: GatewayState
) -> tuple[ConsoleSession, Any] | Response:
    """A POST's session and form, once its CSRF token and origin are right."""
    session = await session_of(request, gateway)
    if session is None:
        return to_login()
    form = await request.form(max_part_size=MAX_UPLOAD_BYTES)
    sent = form.get("csrf")
    if not same_origin(request) or not Sessions.csrf_ok(
        session, sent if isinstance(sent, str) else None
    ):
        return refused(request, gateway, session)
    return session, form


def refusal(
    request: Request, gateway: GatewayState, session: ConsoleSession, exc: GatewayError
) -> HTMLResponse:
    """A ``GatewayError`` of a console action as a page with its status and message."""
    return render(request, gateway, "message.html", session, exc.status_code, text=exc.message)


def not_found(request: Request, gateway: GatewayState, session: ConsoleSession) -> HTMLResponse:
    return render(request, gateway, "message.html", session, 404, message_key="not_found")
