"""``/console``: sign in with a gateway token, try any ability, follow every task.

    GET  /console/login, POST /console/login (token) ─► session cookie ─► /console/abilities
    POST /console/logout
    GET  /console/abilities                      the catalog
    GET  /console/abilities/{id}                 the playground form (from the catalog entry)
    POST /console/abilities/{id}/run             invoke, as the API does, with the session's token
    GET  /console/tasks                          tasks: an app token's own, an admin's all
    GET  /console/tasks/{id}                     the task's story; /live: its state (htmx polling)
    POST /console/tasks/{id}/cancel, /redeliver
    GET  /console/lang/{en|zh}                   the language switch

Every POST checks the session's CSRF token and the request's ``Origin``. An app token sees
its own tasks only (another token's task is a 404, as in the API). Not in the API's OpenAPI
document: these are pages, not operations.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from ability_gateway.server.admin import service as admin_service
from ability_gateway.server.admin.repository import TaskFilter
from ability_gateway.server.auth.limits import RateLimited
from ability_gateway.server.callbacks import service as callbacks_service
from ability_gateway.server.console import forms, views
from ability_gateway.server.console.i18n import LANG_COOKIE, LANGUAGES
from ability_gateway.server.console.pages import (
    checked_form,
    fragment,
    not_found,
    refusal,
    render,
    same_origin,
    session_of,
    signed_in,
    to_login,
)
from ability_gateway.server.console.sessions import COOKIE, ConsoleSession
from ability_gateway.server.deps import Gateway
from ability_gateway.server.errors import GatewayError, NotFound, Unauthorized, error_body
from ability_gateway.server.http import current_request_id
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks import invoke, service
from ability_gateway.server.tasks.answers import InvokeOptions
from ability_gateway.server.usage import service as usage_service

router = APIRouter(prefix="/console", include_in_schema=False)

TERMINAL = ("succeeded", "failed", "canceled", "timeout")
STATUSES = ("queued", "running", *TERMINAL)
PAGE = 50


# --- sign-in ----------------------------------------------------------------------------


@router.get("", response_model=None)
async def console_home() -> RedirectResponse:
    return RedirectResponse("/console/abilities", status_code=303)


@router.get("/login", response_model=None)
async def login_page(request: Request, gateway: Gateway) -> Response:
    if await session_of(request, gateway) is not None:
        return RedirectResponse("/console/abilities", status_code=303)
    return render(request, gateway, "login.html", None)


@router.post("/login", response_model=None)
async def login(
    request: Request, gateway: Gateway, token: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    if not same_origin(request):
        return render(request, gateway, "login.html", None, 403, problem="bad_form")
    try:
        session_id = await gateway.sessions.sign_in(gateway.token_cache, token)
    except Unauthorized:
        return render(request, gateway, "login.html", None, 401, problem="wrong_token")
    response = RedirectResponse("/console/abilities", status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(gateway.sessions.lifetime_s),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", response_model=None)
async def logout(request: Request, gateway: Gateway) -> Response:
    checked = await checked_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    await gateway.sessions.sign_out(request.cookies[COOKIE])
    response = to_login()
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("/lang/{lang}", response_model=None)
async def switch_language(lang: str, back: str = "/console/abilities") -> Response:
    if not back.startswith("/console") or back.startswith("//"):
        back = "/console/abilities"
    response = RedirectResponse(back, status_code=303)
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/console")
    return response


# --- the playground ---------------------------------------------------------------------


@router.get("/abilities", response_model=None)
async def abilities_page(request: Request, gateway: Gateway) -> Response:
    session = await signed_in(request, gateway)
    if isinstance(session, Response):
        return session
    return render(request, gateway, "abilities.html", session, abilities=gateway.catalog.all())


@router.get("/abilities/{ability_id}", response_model=None)
async def playground(request: Request, gateway: Gateway, ability_id: str) -> Response:
    session = await signed_in(request, gateway)
    if isinstance(session, Response):
        return session
    ability = gateway.catalog.get(ability_id)
    if ability is None:
        return not_found(request, gateway, session)
    return render(
        request,
        gateway,
        "playground.html",
        session,
        ability=ability,
        fields=forms.fields_of(ability),
        outcome=None,
    )


@router.post("/abilities/{ability_id}/run", response_model=None)
async def run_ability(request: Request, gateway: Gateway, ability_id: str) -> Response:
    checked = await checked_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    ability = gateway.catalog.get(ability_id)
    if ability is None:
        return not_found(request, gateway, session)
    image = form.get("image_file")
    upload = None
    if isinstance(image, UploadFile) and image.filename:
        data = await image.read()
        if data:
            upload = (image.filename, image.content_type or "image/png", data)
    submitted = forms.read_form(ability, dict(form), upload)
    outcome = await _invoke(gateway, session, ability.id, submitted)
    outcome["snippets"] = forms.snippets(ability, submitted)
    template = "outcome.html" if fragment(request) else "playground.html"
    return render(
        request,
        gateway,
        template,
        session,
        ability=ability,
        fields=forms.fields_of(ability),
        outcome=outcome,
    )


async def _invoke(
    gateway: GatewayState, session: ConsoleSession, ability_id: str, submitted: forms.Submitted
) -> dict[str, Any]:
    """What the API would answer this token, as a dict the templates show: ``result`` (the
    invoke body) or ``error`` (the uniform error body)."""
    principal = session.principal
    options = InvokeOptions(
        wait_seconds=0.0 if submitted.respond_async else gateway.settings.invoke_wait_seconds,
        respond_async=submitted.respond_async,
    )
    try:
        if principal.rate_limit_per_minute:
            try:
                await gateway.limiter.hit(principal.token_id, principal.rate_limit_per_minute)
            except RateLimited:
                gateway.metrics.refused("rate_limit")
                raise
        answer = await invoke.invoke(
            gateway, principal, ability_id, submitted.request, current_request_id(), options
        )
    except GatewayError as exc:
        body = error_body(exc.code, exc.message, **exc.extra)
        return {
            "status_code": exc.status_code,
            "error": {**body, "requestId": current_request_id()},
        }
    result = answer.body
    return {"status_code": answer.status_code, "result": result, "task_id": answer.task_id}


# --- tasks ------------------------------------------------------------------------------


@router.get("/tasks", response_model=None)
async def tasks_page(
    request: Request,
    gateway: Gateway,
    status: str = "",
    ability: str = "",
    q: str = "",
    after: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    session = await signed_in(request, gateway)
    if isinstance(session, Response):
        return session
    zone = gateway.settings.quota_timezone
    where = TaskFilter(
        token_id=None if session.is_admin else session.principal.token_id,
        status=status if status in STATUSES else None,
        ability_id=ability if gateway.catalog.get(ability) else None,
        since_ms=views.local_ms(since, zone),
        until_ms=views.local_ms(until, zone),
        search=q.strip()[:200] or None,
    )
    page = await admin_service.list_tasks(gateway, where, after[:64] or None, PAGE)
    return render(
        request,
        gateway,
        "tasks.html",
        session,
        page=page,
        statuses=STATUSES,
        abilities=gateway.catalog.all(),
        chosen={
            "status": where.status or "",
            "ability": where.ability_id or "",
            "q": q,
            "since": since if where.since_ms is not None else "",
            "until": until if where.until_ms is not None else "",
        },
        timezone=zone,
        live=any(item["status"] in ("queued", "running") for item in page["items"]),
        query=request.url.query,
    )


@router.get("/usage", response_model=None)
async def usage_page(request: Request, gateway: Gateway) -> Response:
    """A token's own usage and quotas (an admin's screen shows every token's)."""
    session = await signed_in(request, gateway)
    if isinstance(session, Response):
        return session
    if session.is_admin:
        return RedirectResponse("/console/admin/usage", status_code=303)
    until = datetime.now(UTC)
    answer = await usage_service.usage(
        gateway.db,
        gateway.settings.quota_timezone,
        since=(until - timedelta(days=14)).isoformat(timespec="seconds"),
        until=until.isoformat(timespec="seconds"),
        group_by="ability,day",
        token_id=session.principal.token_id,
        self_only=True,
    )
    return render(request, gateway, "usage.html", session, usage=answer)


async def _story(
    gateway: GatewayState, session: ConsoleSession, task_id: str
) -> dict[str, Any] | None:
    """The task's story, if this session may see it (an app token: its own tasks only)."""
    try:
        story = await admin_service.task_story(gateway, task_id)
    except NotFound:
        return None
    if not session.is_admin and story["task"]["tokenId"] != session.principal.token_id:
        return None  # as the API: another token's task does not exist for this one
    return story


@router.get("/tasks/{task_id}", response_model=None)
async def task_page(request: Request, gateway: Gateway, task_id: str) -> Response:
    return await _task_view(request, gateway, task_id, "task.html")


@router.get("/tasks/{task_id}/live", response_model=None)
async def task_live(request: Request, gateway: Gateway, task_id: str) -> Response:
    """The task's state and outputs (the fragment a running task's page polls)."""
    return await _task_view(request, gateway, task_id, "live.html")


async def _task_view(
    request: Request, gateway: GatewayState, task_id: str, template: str
) -> Response:
    session = await signed_in(request, gateway)
    if isinstance(session, Response):
        return session
    story = await _story(gateway, session, task_id)
    if story is None:
        return not_found(request, gateway, session)
    return render(
        request,
        gateway,
        template,
        session,
        story=story,
        result=views.result_of(gateway.catalog, story),
        timeline=views.timeline(story),
        terminal=story["task"]["status"] in TERMINAL,
    )


@router.post("/tasks/{task_id}/cancel", response_model=None)
async def cancel_task(request: Request, gateway: Gateway, task_id: str) -> Response:
    checked = await checked_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    session, _ = checked
    story = await _story(gateway, session, task_id)
    if story is None:
        return not_found(request, gateway, session)
    owner = replace(session.principal, token_id=story["task"]["tokenId"])  # admin: any task
    try:
        await service.cancel_task(gateway, owner, task_id)
    except GatewayError as exc:
        return refusal(request, gateway, session, exc)
    return RedirectResponse(f"/console/tasks/{task_id}", status_code=303)


@router.post("/tasks/{task_id}/redeliver", response_model=None)
async def redeliver(request: Request, gateway: Gateway, task_id: str) -> Response:
    checked = await checked_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    session, _ = checked
    story = await _story(gateway, session, task_id)
    if story is None:
        return not_found(request, gateway, session)
    try:
        await callbacks_service.redeliver_task(gateway, task_id)  # the story checked the owner
    except GatewayError as exc:
        return refusal(request, gateway, session, exc)
    return RedirectResponse(f"/console/tasks/{task_id}", status_code=303)
