"""The console over HTTP (the browser tests drive the same pages in Chromium): sign-in and its
cookie, sessions that end with their token, CSRF and Origin checks, what an app token may
see, escaping, and the playground's answer for good and bad input."""

from __future__ import annotations

import asyncio
import base64
import html
import re
import zipfile
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from ability_gateway.server.auth.service import revoke_token
from ability_gateway.server.config import DEV_CONSOLE_SECRET
from ability_gateway.server.console.sessions import COOKIE
from tests.conftest import make_settings
from tests.server.conftest import LiveFactory
from tests.server.console.conftest import Console
from tests.server.media.test_images import png
from tests.support import build_wheel

PROMPT = "ability_coze_prompt_extract"
UPSCALE = "ability_coze_upscale_8k"
TASK_LINK = re.compile(r'href="/console/tasks/(task_[A-Za-z0-9]+)"')


async def test_the_login_page_asks_for_a_token_and_a_wrong_one_is_a_clear_401(
    console: Console,
) -> None:
    page = await console.client.get("/console/login")
    assert page.status_code == 200
    assert 'name="token"' in page.text
    assert "Content-Security-Policy" in page.headers
    wrong = await console.sign_in("agw_" + "x" * 43)
    assert wrong.status_code == 401
    assert "invalid, revoked or expired" in wrong.text
    assert "Traceback" not in wrong.text
    assert COOKIE not in wrong.headers.get("set-cookie", "")


async def test_signing_in_sets_a_strict_httponly_session_cookie_never_the_token(
    console: Console,
) -> None:
    token = await console.token()
    signed = await console.sign_in(token)
    assert signed.status_code == 303
    assert signed.headers["location"] == "/console/abilities"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    assert token.token not in cookie
    page = await console.client.get("/console/abilities")
    assert page.status_code == 200
    assert "提示词提取" in page.text
    assert token.token not in page.text


async def test_a_page_without_a_session_goes_to_the_login(console: Console) -> None:
    for path in ("/console/abilities", "/console/tasks", f"/console/abilities/{PROMPT}"):
        response = await console.client.get(path)
        assert (response.status_code, response.headers["location"]) == (303, "/console/login")


async def test_a_revoked_tokens_session_ends(console: Console) -> None:
    token = await console.token()
    await console.sign_in(token)
    assert (await console.client.get("/console/tasks")).status_code == 200
    await revoke_token(console.state.db, token.id)
    await asyncio.sleep(console.state.settings.auth_cache_seconds + 0.1)
    after = await console.client.get("/console/tasks")
    assert (after.status_code, after.headers["location"]) == (303, "/console/login")


async def test_signing_out_ends_the_session(console: Console) -> None:
    await console.sign_in(await console.token())
    cookie = console.client.cookies[COOKIE]
    out = await console.post("/console/logout", {"csrf": await console.csrf()})
    assert out.status_code == 303
    console.client.cookies.set(COOKIE, cookie, domain="gateway.test", path="/console")
    again = await console.client.get("/console/tasks")  # the old cookie replayed
    assert again.status_code == 303


async def test_a_post_without_the_right_csrf_token_or_origin_is_403(
    console: Console, sample_image: str
) -> None:
    await console.sign_in(await console.token())
    form = {"in.url": sample_image, "in.shuru": "csrf"}
    url = f"/console/abilities/{PROMPT}/run"
    missing = await console.post(url, form)
    wrong = await console.post(url, {**form, "csrf": "0" * 64})
    csrf = await console.csrf()
    elsewhere = await console.post(
        url, {**form, "csrf": csrf}, headers={"Origin": "http://evil.test"}
    )
    assert [r.status_code for r in (missing, wrong, elsewhere)] == [403, 403, 403]
    tasks = await console.client.get("/console/tasks")
    assert TASK_LINK.search(tasks.text) is None  # nothing ran


async def test_the_playground_form_carries_the_catalog_checks(console: Console) -> None:
    await console.sign_in(await console.token())
    outpaint = (await console.client.get("/console/abilities/ability_coze_outpaint")).text
    assert re.search(r'<select id="in-moxing" name="in.moxing"\s*>', outpaint)
    assert all(f'<option value="{c}">' in outpaint for c in ("1", "2", "3"))
    assert 'name="image_file" type="file"' in outpaint
    upscale = (await console.client.get(f"/console/abilities/{UPSCALE}")).text
    field = re.search(r'<input id="in-bianchang"[^>]*>', upscale)
    assert field is not None
    assert all(part in field.group(0) for part in ('step="1"', 'min="1"', 'max="8192"', "required"))


async def test_running_an_ability_shows_its_texts_the_task_and_a_safe_snippet(
    console: Console, sample_image: str
) -> None:
    token = await console.token()
    await console.sign_in(token)
    form = {"csrf": await console.csrf(), "in.url": sample_image, "in.shuru": "a cat"}
    answer = await console.post(
        f"/console/abilities/{PROMPT}/run", form, headers={"HX-Request": "true"}
    )
    assert answer.status_code == 200, answer.text
    assert "<html" not in answer.text  # the fragment only
    assert "data-status>succeeded<" in answer.text
    assert 'data-output="text"' in answer.text
    link = TASK_LINK.search(answer.text)
    assert link is not None
    assert "$GATEWAY_TOKEN" in answer.text
    assert token.token not in answer.text
    task = await console.client.get(f"/console/tasks/{link.group(1)}")
    assert task.status_code == 200
    assert "data-coze-logid>" in task.text
    assert "workflow.run" in task.text


async def test_bad_input_shows_the_field_level_errors(console: Console) -> None:
    await console.sign_in(await console.token())
    form = {"csrf": await console.csrf(), "in.url": "not a url", "in.bianchang": "-5"}
    answer = await console.post(f"/console/abilities/{UPSCALE}/run", form)
    assert answer.status_code == 200
    assert "<html" in answer.text  # without htmx: the whole page, with the answer
    assert re.search(r"<code>inputs\.url</code>", answer.text)
    assert re.search(r"<code>inputs\.bianchang</code>", answer.text)


async def test_an_upload_is_sent_as_image_base64_and_the_snippet_names_a_path(
    live: LiveFactory,
) -> None:
    async with live() as gw, httpx.AsyncClient(base_url=gw.url, timeout=60) as client:
        # Over HTTP: the simulator fetches the stored upload from this gateway.
        console = Console(client, gw.state, origin=gw.url)
        await console.sign_in(await console.token())
        files = {"image_file": ("cat.png", png(32, 32), "image/png")}
        form = {"csrf": await console.csrf(), "in.shuru": "uploaded"}
        answer = await console.post(
            f"/console/abilities/{PROMPT}/run", form, files=files, headers={"HX-Request": "true"}
        )
    assert answer.status_code == 200, answer.text
    assert "data-status>succeeded<" in answer.text
    assert "--image cat.png" in answer.text
    assert "image_path='cat.png'" in html.unescape(answer.text)
    assert base64.b64encode(png(32, 32)).decode()[:40] not in answer.text


async def test_an_app_token_sees_its_own_tasks_only(console: Console, sample_image: str) -> None:
    other = await console.token("other")
    async with httpx.AsyncClient(
        transport=console.client._transport, base_url="http://gateway.test"
    ) as api:
        theirs = await api.post(
            f"/api/abilities/{PROMPT}/invoke",
            json={"inputs": {"url": sample_image, "shuru": "theirs"}},
            headers={"Authorization": f"Bearer {other.token}"},
        )
    task_id = theirs.json()["metadata"]["taskId"]
    await console.sign_in(await console.token("mine"))
    assert task_id not in (await console.client.get("/console/tasks")).text
    assert (await console.client.get(f"/console/tasks/{task_id}")).status_code == 404
    admin = Console(console.client, console.state)
    await admin.sign_in(await console.token("root", admin=True))
    assert task_id in (await console.client.get("/console/tasks")).text
    assert (await console.client.get(f"/console/tasks/{task_id}")).status_code == 200


async def test_a_tasks_metadata_renders_escaped(console: Console, sample_image: str) -> None:
    token = await console.token()
    async with httpx.AsyncClient(
        transport=console.client._transport, base_url="http://gateway.test"
    ) as api:
        made = await api.post(
            f"/api/abilities/{PROMPT}/invoke",
            json={
                "inputs": {"url": sample_image, "shuru": "<img src=x onerror=alert(1)>"},
                "metadata": {"note": "<script>alert(1)</script>"},
            },
            headers={"Authorization": f"Bearer {token.token}"},
        )
    await console.sign_in(token)
    page = await console.client.get(f"/console/tasks/{made.json()['metadata']['taskId']}")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<img src=x" not in page.text


async def test_the_language_follows_accept_language_and_the_switch(console: Console) -> None:
    english = await console.client.get("/console/login", headers={"Accept-Language": "en-US"})
    chinese = await console.client.get("/console/login", headers={"Accept-Language": "zh-CN,zh"})
    assert ">Sign in<" in english.text
    assert ">登录<" in chinese.text
    switched = await console.client.get("/console/lang/zh?back=/console/login")
    assert switched.headers["location"] == "/console/login"
    after = await console.client.get("/console/login", headers={"Accept-Language": "en"})
    assert ">登录<" in after.text
    away = await console.client.get("/console/lang/en?back=//evil.test/")
    assert away.headers["location"] == "/console/abilities"  # never off the console


def test_production_refuses_the_development_session_secret(tmp_path: object) -> None:
    with pytest.raises(ValidationError, match="GATEWAY_CONSOLE_SESSION_SECRET"):
        make_settings(tmp_path, "http://127.0.0.1:9", env="production", coze_api_token="pat_x")  # type: ignore[arg-type]
    ok = make_settings(
        tmp_path,  # type: ignore[arg-type]
        "http://127.0.0.1:9",
        env="production",
        coze_api_token="pat_x",
        console_session_secret="s" * 40,
    )
    assert ok.console_session_secret.get_secret_value() != DEV_CONSOLE_SECRET


async def test_the_vendored_htmx_is_served_from_the_package(console: Console) -> None:
    served = await console.client.get("/console/static/htmx-2.0.11.min.js")
    assert served.status_code == 200
    assert "htmx" in served.text[:2000]


def test_the_wheel_ships_the_console_templates_and_assets(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3]
    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        names = set(wheel.namelist())
    console = root / "src" / "ability_gateway" / "server" / "console"
    expected = {
        "ability_gateway/server/console/" + str(path.relative_to(console))
        for folder in ("templates", "static")
        for path in (console / folder).iterdir()
    }
    assert {n for n in expected if n.endswith((".html", ".js", ".css"))} <= names
    assert "ability_gateway/server/console/static/htmx-2.0.11.min.js" in names


async def test_an_app_token_reads_its_own_usage_and_filters_tasks_by_time(
    console: Console, sample_image: str
) -> None:
    token = await console.token()
    await console.sign_in(token)
    form = {"csrf": await console.csrf(), "in.url": sample_image, "in.shuru": "usage"}
    assert (await console.post(f"/console/abilities/{PROMPT}/run", form)).status_code == 200
    usage = await console.client.get("/console/usage")
    assert usage.status_code == 200
    assert re.search(rf"<td>{PROMPT}</td><td>1</td>", usage.text)
    everything = await console.client.get("/console/tasks")
    assert TASK_LINK.search(everything.text)
    before = await console.client.get("/console/tasks?until=2000-01-01T00:00")
    assert TASK_LINK.search(before.text) is None
    assert 'value="2000-01-01T00:00"' in before.text
    ignored = await console.client.get("/console/tasks?since=yesterday")  # not a time: no filter
    assert TASK_LINK.search(ignored.text)


async def test_the_task_list_refreshes_itself_while_a_task_runs(
    live: LiveFactory, tmp_path: Path
) -> None:
    async with live("--job-seconds", "30") as gw, httpx.AsyncClient(base_url=gw.url) as client:
        console = Console(client, gw.state, origin=gw.url)
        await console.sign_in(await console.token())
        form = {
            "csrf": await console.csrf(),
            "in.url": f"{gw.sim_url}/files/samples/square.png",
            "in.width": "64",
            "in.height": "64",
            "in.prompt": "slow",
        }
        started = await console.post("/console/abilities/ability_coze_image_gen_4step/run", form)
        assert re.search(r'hx-get="/console/tasks/task_\w+/live"', started.text)  # it follows
        listed = await client.get("/console/tasks")
    assert 'hx-trigger="every 3s"' in listed.text


def test_a_url_from_an_answer_is_a_link_only_when_it_is_http() -> None:
    from ability_gateway.server.console.pages import environment

    web = environment.filters["web"]
    assert web("https://www.coze.cn/work_flow?execute_id=1") == (
        "https://www.coze.cn/work_flow?execute_id=1"
    )
    assert web("/media/2026/12/x.png") == "/media/2026/12/x.png"
    assert web("javascript:alert(1)") is None
    assert web("//elsewhere.test/x") is None
    assert web(None) is None
