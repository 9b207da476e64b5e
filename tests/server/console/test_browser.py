"""The console in a real browser: Playwright driving Debian's Chromium (``/usr/bin/chromium``,
never a downloaded one) against a real gateway and simulator over HTTP.

Skipped when Chromium is missing, unless ``GATEWAY_TEST_REQUIRE_BROWSER=1`` (CI) makes that
an error. Each page is screenshotted into ``screenshots/`` (ignored by git); ``make
screenshots`` copies the README's three into ``docs/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ability_gateway.server.auth.service import CreatedToken, create_token
from tests.server.conftest import Live, LiveFactory
from tests.server.media.test_images import png

CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[3] / "screenshots"
# As the machine's notes advise: headless, and no connections of Chromium's own.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not shutil.which(CHROMIUM):
    if os.environ.get("GATEWAY_TEST_REQUIRE_BROWSER"):
        raise RuntimeError(f"GATEWAY_TEST_REQUIRE_BROWSER is set but {CHROMIUM} is missing")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

pytestmark = pytest.mark.timeout(180)
OUTPAINT = "ability_coze_outpaint"
GENERATE = "ability_coze_image_gen_4step"
PROMPT = "ability_coze_prompt_extract"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        await launched.close()


async def new_page(browser: Browser, gw: Live, lang: str = "en-US") -> Page:
    context = await browser.new_context(
        base_url=gw.url, viewport={"width": 1280, "height": 860}, locale=lang
    )
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    return page


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Page, token: CreatedToken) -> None:
    await page.goto("/console/login")
    await page.fill("#token", token.token)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{page.url.split('/console')[0]}/console/abilities")


async def test_sign_in_run_with_an_upload_and_follow_the_task(
    browser: Browser, live: LiveFactory, tmp_path: Path
) -> None:
    async with live() as gw:
        page = await new_page(browser, gw)
        await page.goto("/console/login")
        await page.fill("#token", "agw_" + "x" * 43)
        await page.click("button[type=submit]")
        await expect(page.locator(".problem")).to_contain_text("invalid, revoked or expired")
        await shot(page, "login-wrong-token")

        token = await create_token(gw.state.db, "browser")
        await sign_in(page, token)
        await expect(page.locator("table.list")).to_contain_text("扩图多模型版本")
        await shot(page, "abilities")

        await page.click(f"a[href='/console/abilities/{OUTPAINT}']")
        image = tmp_path / "cat.png"
        image.write_bytes(png(48, 32))
        await page.set_input_files("#image-file", str(image))
        for side in ("top", "bottom", "left", "right"):
            await page.fill(f"#in-expand_{side}", "8")
        await page.select_option("#in-moxing", "2")
        await page.click("form.card button[type=submit]")
        result = page.locator("#outcome [data-status]")
        await expect(result).to_have_text("succeeded", timeout=30_000)
        thumb = page.locator("#outcome img[data-output=image]")
        await expect(thumb).to_be_visible()
        # The thumbnail is our mirrored copy, and it loaded (not a broken image).
        assert (await thumb.get_attribute("src") or "").startswith(f"{gw.url}/media/")
        assert await thumb.evaluate("img => img.complete && img.naturalWidth > 0")
        # 48×32 expanded by 8 on every side.
        await expect(page.locator("#outcome [data-size]").first).to_have_text("64 × 48 px")
        snippet = await page.locator("[data-snippet=cli]").inner_text()
        assert "--image cat.png" in snippet
        assert token.token not in await page.content()
        await shot(page, "playground")

        await page.click("#outcome a[href^='/console/tasks/']")
        await expect(page.locator("#call-logs")).to_contain_text("workflow.run")
        assert await page.locator("[data-coze-logid]").first.inner_text()
        await shot(page, "task")
        assert page.dialogs == []  # type: ignore[attr-defined]


async def test_a_generation_task_updates_live_until_it_ends(
    browser: Browser, live: LiveFactory, sample_image: str
) -> None:
    async with live("--job-seconds", "2") as gw:
        page = await new_page(browser, gw, lang="zh-CN")
        await sign_in(page, await create_token(gw.state.db, "gen"))
        await page.goto(f"/console/abilities/{GENERATE}")
        await page.fill("#in-url", f"{gw.sim_url}/files/samples/square.png")
        await page.fill("#in-height", "64")
        await page.fill("#in-width", "64")
        await page.fill("#in-prompt", "一只猫")
        await page.click("form.card button[type=submit]")
        status = page.locator("#outcome [data-status]").last
        await expect(status).to_have_text("succeeded", timeout=60_000)
        await expect(page.locator("#outcome img[data-output=image]").first).to_be_visible()
        await shot(page, "generation-zh")


async def test_csrf_another_tokens_task_and_escaping_in_the_browser(
    browser: Browser, live: LiveFactory, sample_image: str
) -> None:
    async with live() as gw:
        mine = await create_token(gw.state.db, "mine")
        other = await create_token(gw.state.db, "other")
        async with httpx.AsyncClient(base_url=gw.url) as api:
            made = await api.post(
                f"/api/abilities/{PROMPT}/invoke",
                json={
                    "inputs": {"url": sample_image, "shuru": "x"},
                    "metadata": {"note": "<script>alert('xss')</script>"},
                },
                headers={"Authorization": f"Bearer {mine.token}"},
            )
            theirs = await api.post(
                f"/api/abilities/{PROMPT}/invoke",
                json={"inputs": {"url": sample_image, "shuru": "y"}},
                headers={"Authorization": f"Bearer {other.token}"},
            )
        page = await new_page(browser, gw)
        await sign_in(page, mine)

        await page.goto(f"/console/tasks/{made.json()['metadata']['taskId']}")
        await expect(page.locator("[data-metadata]")).to_contain_text(
            "<script>alert('xss')</script>"
        )
        assert page.dialogs == []  # type: ignore[attr-defined]
        await shot(page, "task-escaped")

        missing = await page.goto(f"/console/tasks/{theirs.json()['metadata']['taskId']}")
        assert missing is not None
        assert missing.status == 404

        # A same-site POST with the session cookie but no (or a wrong) CSRF token.
        statuses = await page.evaluate(
            """async (ability) => {
                const post = async (csrf) => {
                    const body = new FormData();
                    body.append('in.url', 'http://127.0.0.1/x.png');
                    if (csrf !== null) body.append('csrf', csrf);
                    const url = `/console/abilities/${ability}/run`;
                    const r = await fetch(url, {method: 'POST', body});
                    return r.status;
                };
                return [await post(null), await post('0'.repeat(64))];
            }""",
            PROMPT,
        )
        assert statuses == [403, 403]


async def test_an_admin_creates_rotates_and_revokes_a_token_and_reads_usage(
    browser: Browser, live: LiveFactory, sample_image: str
) -> None:
    async with live() as gw:
        app = await create_token(gw.state.db, "app")
        async with httpx.AsyncClient(base_url=gw.url) as api:
            for n in range(3):
                await api.post(
                    f"/api/abilities/{PROMPT}/invoke",
                    json={"inputs": {"url": sample_image, "shuru": f"usage {n}"}},
                    headers={"Authorization": f"Bearer {app.token}"},
                )
        page = await new_page(browser, gw)
        await sign_in(page, app)  # an app token first: no admin screen for it
        forbidden = await page.goto("/console/admin/tokens")
        assert forbidden is not None
        assert forbidden.status == 403
        await page.click("button.link")  # sign out

        await sign_in(page, await create_token(gw.state.db, "root", admin=True))
        await page.click("a[href='/console/admin/tokens']")
        await page.click("#create summary")
        await page.fill("input[name=name]", "partner")
        await page.fill(".grid-form input[name=dailyInvocations]", "100")
        await page.click("#create-token")
        value = await page.locator("[data-secret=token]").inner_text()
        assert value.startswith("agw_")
        await shot(page, "admin-token-created")
        row = page.locator("#tokens tr", has_text="partner")
        await row.locator("[data-action=rotate]").click()
        rotated = await page.locator("[data-secret=token]").inner_text()
        assert rotated.startswith("agw_")
        assert rotated != value
        await page.locator("#tokens tr", has_text="partner").locator("[data-action=revoke]").click()
        await expect(
            page.locator("#tokens tr", has_text="partner").locator("[data-state]")
        ).to_have_text("revoked")
        await shot(page, "admin-tokens")

        await page.click("a[href='/console/admin/executors']")
        await expect(page.locator("[data-circuit]").first).to_have_text("closed")
        await shot(page, "admin-executors")
        await page.click("a[href='/console/admin/usage']")
        await expect(page.locator("#usage-chart canvas")).to_be_visible()
        await expect(page.locator("#usage-by-day")).to_contain_text(PROMPT)
        await shot(page, "admin-usage")
        assert page.dialogs == []  # type: ignore[attr-defined]
