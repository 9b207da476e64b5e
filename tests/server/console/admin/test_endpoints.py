"""The console's admin screens over HTTP: app tokens get a 403 page on each, and each screen
does what the admin API does (a created or rotated value shown once, revocation, limits and
quotas, the executors' state, the callback dead letter and its redelivery, usage and CSV)."""

from __future__ import annotations

import asyncio
import csv
import io
import re

import pytest

from ability_gateway.server.auth import admin as token_admin
from tests.server.console.conftest import Console
from tests.support import Receiver

PROMPT = "ability_coze_prompt_extract"
SHOWN = re.compile(r'data-secret="token">(agw_[A-Za-z0-9_-]{43})<')
SCREENS = ("tokens", "executors", "callbacks", "usage", "usage.csv")


async def test_an_app_token_gets_403_on_every_admin_screen(console: Console) -> None:
    await console.sign_in(await console.token())
    for screen in SCREENS:
        page = await console.client.get(f"/console/admin/{screen}")
        assert page.status_code == 403, screen
        assert "This page is for admin tokens." in page.text
    csrf = await console.csrf()
    created = await console.post("/console/admin/tokens", {"csrf": csrf, "name": "sneaky"})
    assert created.status_code == 403
    names = [
        t["name"]
        for t in (
            await token_admin.list_all(console.state.db, include_revoked=True, after=None, limit=50)
        )[0]
    ]
    assert "sneaky" not in names


async def test_an_admin_creates_a_token_shown_once_rotates_and_revokes_it(
    console: Console,
) -> None:
    await console.sign_in(await console.token("root", admin=True))
    csrf = await console.csrf("/console/admin/tokens")
    form = {"csrf": csrf, "name": "mobile app", "rateLimitPerMinute": "60", "dailyInvocations": "5"}
    created = await console.post("/console/admin/tokens", form)
    assert created.status_code == 200
    value = SHOWN.search(created.text)
    assert value is not None
    assert 'data-secret="callback">whsec_' in created.text
    listed = await console.client.get("/console/admin/tokens")
    assert value.group(1) not in listed.text  # shown once
    [row] = [
        t
        for t in (
            await token_admin.list_all(console.state.db, include_revoked=True, after=None, limit=50)
        )[0]
        if t["name"] == "mobile app"
    ]
    assert row["limits"]["rateLimitPerMinute"] == 60
    assert row["quotas"]["dailyInvocations"] == 5

    rotated = await console.post(
        f"/console/admin/tokens/{row['id']}/rotate", {"csrf": csrf, "overlapSeconds": "0"}
    )
    new_value = SHOWN.search(rotated.text)
    assert new_value is not None
    assert new_value.group(1) != value.group(1)
    changed = await console.post(
        f"/console/admin/tokens/{row['id']}/limits",
        {"csrf": csrf, "rateLimitPerMinute": "", "maxConcurrentTasks": "3", "mediaBytes": "1000"},
    )
    assert changed.status_code == 303
    after = await token_admin.get(console.state.db, row["id"])
    assert after["limits"] == {"rateLimitPerMinute": None, "maxConcurrentTasks": 3}
    assert after["quotas"]["mediaBytes"] == 1000
    revoked = await console.post(f"/console/admin/tokens/{row['id']}/revoke", {"csrf": csrf})
    assert revoked.status_code == 303
    assert (await token_admin.get(console.state.db, row["id"]))["state"] == "revoked"


async def test_a_bad_number_is_a_400_naming_the_field(console: Console) -> None:
    await console.sign_in(await console.token("root", admin=True))
    csrf = await console.csrf("/console/admin/tokens")
    bad = await console.post(
        "/console/admin/tokens", {"csrf": csrf, "name": "x", "rateLimitPerMinute": "-1"}
    )
    assert bad.status_code == 400
    assert "<code>rateLimitPerMinute</code>" in bad.text


async def test_the_executors_screen_shows_each_circuit(console: Console) -> None:
    await console.sign_in(await console.token("root", admin=True))
    page = await console.client.get("/console/admin/executors")
    assert page.status_code == 200
    assert "data-circuit>closed<" in page.text


@pytest.mark.timeout(60)
async def test_the_dead_letter_lists_a_gone_callback_and_redelivers_it(
    console: Console, sample_image: str
) -> None:
    app = await console.token()
    with Receiver(default=(410, {}, 0.0)) as receiver:
        api = console.client
        made = await api.post(
            f"/api/abilities/{PROMPT}/invoke",
            json={"inputs": {"url": sample_image, "shuru": "dead"}, "callbackUrl": receiver.url},
            headers={"Authorization": f"Bearer {app.token}"},
        )
        task_id = made.json()["metadata"]["taskId"]
        await console.sign_in(await console.token("root", admin=True))
        for _ in range(200):
            page = await console.client.get("/console/admin/callbacks")
            if task_id in page.text:
                break
            await asyncio.sleep(0.05)
        assert task_id in page.text
        assert ">gone<" in page.text
        csrf = await console.csrf("/console/admin/callbacks")
        again = await console.post(
            "/console/admin/callbacks/redeliver", {"csrf": csrf, "taskId": task_id}
        )
    assert again.status_code == 200
    assert re.search(rf"<code>{task_id}</code>: failed HTTP 410", again.text)


async def test_usage_shows_the_days_calls_and_exports_csv(
    console: Console, sample_image: str
) -> None:
    app = await console.token()
    for n in range(2):
        answer = await console.client.post(
            f"/api/abilities/{PROMPT}/invoke",
            json={"inputs": {"url": sample_image, "shuru": f"u{n}"}},
            headers={"Authorization": f"Bearer {app.token}"},
        )
        assert answer.status_code == 200
    await console.sign_in(await console.token("root", admin=True))
    page = await console.client.get("/console/admin/usage?days=7")
    assert page.status_code == 200
    assert re.search(rf"<td>{PROMPT}</td><td>2</td>", page.text)
    assert 'id="usage-chart"' in page.text
    exported = await console.client.get("/console/admin/usage.csv?days=7")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["tokenId"], r["abilityId"], r["calls"]) for r in rows] == [(app.id, PROMPT, "2")]
