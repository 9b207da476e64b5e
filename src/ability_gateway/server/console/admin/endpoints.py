"""``/console/admin``: the admin screens, over the same services as the admin API.

    GET  /console/admin/tokens                 every token; the create form
    POST /console/admin/tokens                 create: the value and secret shown once
    POST /console/admin/tokens/{id}/rotate     a new value shown once (the old one overlaps)
    POST /console/admin/tokens/{id}/revoke
    POST /console/admin/tokens/{id}/limits     limits and quotas (empty: none)
    GET  /console/admin/executors              state, breaker reason, load, last hour's calls
    GET  /console/admin/callbacks              the dead letter (exhausted, gone)
    POST /console/admin/callbacks/redeliver    the selected ones, once each
    GET  /console/admin/usage[.csv]            calls and success per day and ability, p95, per token

An app token's session gets a 403 page on every one of them.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ability_gateway.server.admin import service as admin_service
from ability_gateway.server.auth import admin as token_admin
from ability_gateway.server.auth.service import create_token
from ability_gateway.server.console.pages import checked_form, refusal, render, signed_in
from ability_gateway.server.console.sessions import ConsoleSession
from ability_gateway.server.deps import Gateway
from ability_gateway.server.errors import GatewayError
from ability_gateway.server.state import GatewayState
from ability_gateway.server.usage import service as usage_service

router = APIRouter(prefix="/console/admin", include_in_schema=False)

DEAD = ("exhausted", "gone")
MAX_REDELIVER = 50
USAGE_DAYS = (7, 14, 30, 90)


async def _admin(request: Request, gateway: GatewayState) -> ConsoleSession | Response:
    session = await signed_in(request, gateway)
    if isinstance(session, ConsoleSession) and not session.is_admin:
        return render(request, gateway, "message.html", session, 403, message_key="forbidden")
    return session


async def _admin_form(
    request: Request, gateway: GatewayState
) -> tuple[ConsoleSession, Any] | Response:
    checked = await checked_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    if not checked[0].is_admin:
        return render(request, gateway, "message.html", checked[0], 403, message_key="forbidden")
    return checked


def _number(form: Any, name: str) -> int | None:
    """An optional positive whole number from a form field (empty: none)."""
    raw = str(form.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(name)
    return int(raw)


# --- tokens -----------------------------------------------------------------------------


async def _tokens_page(
    request: Request,
    gateway: GatewayState,
    session: ConsoleSession,
    *,
    status_code: int = 200,
    **context: Any,
) -> Response:
    items, _ = await token_admin.list_all(gateway.db, include_revoked=True, after=None, limit=200)
    return render(
        request, gateway, "admin_tokens.html", session, status_code, tokens=items, **context
    )


@router.get("/tokens", response_model=None)
async def tokens_page(request: Request, gateway: Gateway) -> Response:
    session = await _admin(request, gateway)
    if isinstance(session, Response):
        return session
    return await _tokens_page(request, gateway, session)


@router.post("/tokens", response_model=None)
async def create(request: Request, gateway: Gateway) -> Response:
    checked = await _admin_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    name = str(form.get("name") or "").strip()[:200]
    try:
        if not name:
            raise ValueError("name")
        days = _number(form, "expiresInDays")
        rate = _number(form, "rateLimitPerMinute")
        concurrent = _number(form, "maxConcurrentTasks")
        daily = _number(form, "dailyInvocations")
        media_bytes = _number(form, "mediaBytes")
    except ValueError as exc:
        return await _tokens_page(request, gateway, session, status_code=400, problem=str(exc))
    created = await create_token(
        gateway.db,
        name,
        admin=form.get("admin") == "on",
        expires_in_days=days,
        rate_limit_per_minute=rate,
        max_concurrent_tasks=concurrent,
    )
    if daily is not None or media_bytes is not None:
        await usage_service.set_quotas(
            gateway.db,
            created.id,
            daily_invocations=daily,
            media_bytes=media_bytes,
            cache=gateway.token_cache,
        )
    shown = {"id": created.id, "token": created.token, "callbackSecret": created.callback_secret}
    return await _tokens_page(request, gateway, session, shown=shown)


@router.post("/tokens/{token_id}/rotate", response_model=None)
async def rotate(request: Request, gateway: Gateway, token_id: str) -> Response:
    checked = await _admin_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    overlap = str(form.get("overlapSeconds") or "0").strip()
    seconds = int(overlap) if overlap.isdigit() else 0
    try:
        rotated = await token_admin.rotate_value(
            gateway.db, gateway.token_cache, token_id, min(seconds, 30 * 86400)
        )
    except GatewayError as exc:
        return refusal(request, gateway, session, exc)
    shown = {"id": token_id, "token": rotated.token, "callbackSecret": None}
    return await _tokens_page(request, gateway, session, shown=shown)


@router.post("/tokens/{token_id}/revoke", response_model=None)
async def revoke(request: Request, gateway: Gateway, token_id: str) -> Response:
    checked = await _admin_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    session, _ = checked
    try:
        await token_admin.revoke(gateway.db, gateway.token_cache, token_id)
    except GatewayError as exc:
        return refusal(request, gateway, session, exc)
    return RedirectResponse("/console/admin/tokens", status_code=303)


@router.post("/tokens/{token_id}/limits", response_model=None)
async def limits(request: Request, gateway: Gateway, token_id: str) -> Response:
    checked = await _admin_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    try:
        values = {
            "rate_limit_per_minute": _number(form, "rateLimitPerMinute"),
            "max_concurrent_tasks": _number(form, "maxConcurrentTasks"),
        }
        daily = _number(form, "dailyInvocations")
        media_bytes = _number(form, "mediaBytes")
    except ValueError as exc:
        return await _tokens_page(request, gateway, session, status_code=400, problem=str(exc))
    try:
        await token_admin.change(gateway.db, gateway.token_cache, token_id, values)
    except GatewayError as exc:
        return refusal(request, gateway, session, exc)
    await usage_service.set_quotas(
        gateway.db,
        token_id,
        daily_invocations=daily,
        media_bytes=media_bytes,
        cache=gateway.token_cache,
    )
    return RedirectResponse("/console/admin/tokens", status_code=303)


# --- executors and callbacks ------------------------------------------------------------


@router.get("/executors", response_model=None)
async def executors_page(request: Request, gateway: Gateway) -> Response:
    session = await _admin(request, gateway)
    if isinstance(session, Response):
        return session
    items = await admin_service.executor_views(gateway)
    return render(request, gateway, "admin_executors.html", session, executors=items)


@router.get("/callbacks", response_model=None)
async def callbacks_page(request: Request, gateway: Gateway) -> Response:
    session = await _admin(request, gateway)
    if isinstance(session, Response):
        return session
    page = await admin_service.list_deliveries(gateway, DEAD, None, None, 200)
    return render(request, gateway, "admin_callbacks.html", session, page=page, results=None)


@router.post("/callbacks/redeliver", response_model=None)
async def redeliver(request: Request, gateway: Gateway) -> Response:
    checked = await _admin_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    chosen = [str(v) for v in form.getlist("taskId")][:MAX_REDELIVER]
    results = await admin_service.redeliver_many(gateway, chosen) if chosen else []
    page = await admin_service.list_deliveries(gateway, DEAD, None, None, 200)
    return render(request, gateway, "admin_callbacks.html", session, page=page, results=results)


# --- usage ------------------------------------------------------------------------------


async def _usage(gateway: GatewayState, days: int, group: str) -> dict[str, Any]:
    until = datetime.now(UTC)
    since = until - timedelta(days=days)
    return await usage_service.usage(
        gateway.db,
        gateway.settings.quota_timezone,
        since=since.isoformat(timespec="seconds"),
        until=until.isoformat(timespec="seconds"),
        group_by=group,
    )


@router.get("/usage", response_model=None)
async def usage_page(request: Request, gateway: Gateway, days: int = 14) -> Response:
    session = await _admin(request, gateway)
    if isinstance(session, Response):
        return session
    days = days if days in USAGE_DAYS else 14
    by_day = await _usage(gateway, days, "ability,day")
    by_token = await _usage(gateway, days, "token")
    return render(
        request,
        gateway,
        "admin_usage.html",
        session,
        days=days,
        choices=USAGE_DAYS,
        by_day=by_day,
        by_token=by_token,
        chart=chart_series(by_day),
    )


def chart_series(answer: dict[str, Any]) -> dict[str, Any]:
    """Per day of the range (all abilities; a day without calls is 0): calls, success rate
    (%) and the largest p95 (ms), as the chart script reads them (``data-series``)."""
    zone = ZoneInfo(answer["timezone"])
    first = datetime.fromisoformat(answer["from"]).astimezone(zone).date()
    last = datetime.fromisoformat(answer["to"]).astimezone(zone).date()
    days: dict[date, dict[str, float]] = {}
    day = first
    while day <= last:
        days[day] = {"calls": 0, "succeeded": 0, "p95": 0}
        day += timedelta(days=1)
    for item in answer["items"]:
        totals = days.get(datetime.fromisoformat(item["period"]).date())
        if totals is None:
            continue
        totals["calls"] += item["calls"]
        totals["succeeded"] += item["succeeded"]
        totals["p95"] = max(totals["p95"], item["p95Ms"] or 0)
    ordered = sorted(days.items())
    return {
        "time": [int(datetime.combine(d, time(), zone).timestamp()) for d, _ in ordered],
        "calls": [v["calls"] for _, v in ordered],
        "successRate": [
            round(100 * v["succeeded"] / v["calls"], 1) if v["calls"] else None for _, v in ordered
        ],
        "p95Ms": [v["p95"] or None for _, v in ordered],
    }


@router.get("/usage.csv", response_model=None)
async def usage_csv(request: Request, gateway: Gateway, days: int = 14) -> Response:
    session = await _admin(request, gateway)
    if isinstance(session, Response):
        return session
    days = days if days in USAGE_DAYS else 14
    answer = await _usage(gateway, days, "token,ability,day")
    out = io.StringIO()
    writer = csv.writer(out)
    columns = ["period", "tokenId", "abilityId", "calls", "succeeded", "failed", "timeout"]
    columns += ["canceled", "cacheHits", "p50Ms", "p95Ms", "meanMs"]
    writer.writerow([*columns, "cozeTokensTotal"])
    for item in answer["items"]:
        writer.writerow([*(item[c] for c in columns), item["cozeTokens"]["total"]])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="usage-{days}d.csv"'},
    )
