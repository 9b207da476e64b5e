"""An ``imageBase64`` upload is stored only after every check of the invocation passed,
and the token that stored it is recorded (media rows are shared by content)."""

from __future__ import annotations

import base64
import hashlib
import os

from sqlalchemy import func, select

from ability_gateway.server.auth.service import create_token
from ability_gateway.server.models import media, media_tokens
from tests.server.conftest import Live, LiveFactory
from tests.server.media.test_images import PNG_SIGNATURE, png

OUTPAINT = "ability_coze_outpaint"
EXPAND = {"expand_top": 0, "expand_bottom": 0, "expand_left": 10, "expand_right": 20}


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


async def stored_count(gw: Live) -> int:
    async with gw.state.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(media))).scalar_one())


def stored_files(gw: Live) -> list[str]:
    root = gw.state.settings.data_dir / "media"
    return [str(p) for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_an_upload_with_an_unknown_executor_is_refused_and_not_stored(
    live: LiveFactory,
) -> None:
    async with live() as gw:
        response = await gw.invoke(
            OUTPAINT, {"imageBase64": data_url(png(64, 64)), "inputs": EXPAND, "executorId": "nope"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["field"] == "executorId"
        assert await stored_count(gw) == 0
        assert stored_files(gw) == []


async def test_magic_bytes_and_megabytes_of_junk_are_not_stored_or_served(
    live: LiveFactory,
) -> None:
    async with live() as gw:
        junk = PNG_SIGNATURE + os.urandom(5 * 1024 * 1024)
        response = await gw.invoke(OUTPAINT, {"imageBase64": data_url(junk), "inputs": EXPAND})
        assert response.status_code == 400, response.text
        assert response.json()["errors"] == [
            {"field": "imageBase64", "problem": "is not a valid image (it does not decode)"}
        ]
        assert await stored_count(gw) == 0
        assert stored_files(gw) == []


async def test_an_upload_over_the_pixel_cap_is_413_and_not_stored(live: LiveFactory) -> None:
    async with live(max_image_pixels=64 * 64) as gw:
        response = await gw.invoke(
            OUTPAINT, {"imageBase64": data_url(png(65, 64)), "inputs": EXPAND}
        )
        assert response.status_code == 413, response.text
        assert response.json()["code"] == 413
        assert await stored_count(gw) == 0


async def test_an_upload_with_a_bad_input_is_not_stored(live: LiveFactory) -> None:
    async with live() as gw:
        response = await gw.invoke(
            OUTPAINT,
            {"imageBase64": data_url(png(64, 64)), "inputs": {**EXPAND, "expand_top": "x"}},
        )
        assert response.status_code == 400, response.text
        assert await stored_count(gw) == 0


async def test_a_replayed_upload_is_not_stored_again(live: LiveFactory) -> None:
    async with live() as gw:
        body = {"imageBase64": data_url(png(64, 64)), "inputs": EXPAND}
        first = await gw.invoke(OUTPAINT, body, Idempotency_Key="upload-1")
        assert first.status_code == 200, first.text
        async with gw.state.db.read() as conn:
            used = (await conn.execute(select(media.c.key, media.c.last_used_at))).all()
        again = await gw.invoke(OUTPAINT, body, Idempotency_Key="upload-1")
        assert again.status_code == 200, again.text
        assert again.json()["metadata"]["taskId"] == first.json()["metadata"]["taskId"]
        async with gw.state.db.read() as conn:
            after = (await conn.execute(select(media.c.key, media.c.last_used_at))).all()
        assert sorted(after) == sorted(used)  # not stored, not even touched


async def test_every_token_that_stores_the_same_image_is_linked_to_it(live: LiveFactory) -> None:
    async with live() as gw:
        one = await create_token(gw.state.db, "one")
        two = await create_token(gw.state.db, "two")
        upload = png(64, 64)
        body = {"imageBase64": data_url(upload), "inputs": EXPAND}
        for token in (one, two, one):
            answer = await gw.client.post(
                f"/api/abilities/{OUTPAINT}/invoke",
                json=body,
                headers={"Authorization": f"Bearer {token.token}"},
            )
            assert answer.status_code == 200, answer.text
        digest = hashlib.sha256(upload).hexdigest()
        async with gw.state.db.read() as conn:
            linked = (
                await conn.execute(
                    select(media_tokens.c.token_id).where(media_tokens.c.sha256 == digest)
                )
            ).scalars()
            rows = (
                await conn.execute(select(media.c.sha256).where(media.c.sha256 == digest))
            ).all()
            assert sorted(linked) == sorted([one.id, two.id])  # one content, two tokens
        assert len(rows) == 1


async def test_a_mirrored_output_is_linked_to_the_token_whose_task_made_it(
    live: LiveFactory,
) -> None:
    async with live() as gw:
        mine = await create_token(gw.state.db, "mine")
        answer = await gw.client.post(
            f"/api/abilities/{OUTPAINT}/invoke",
            json={"imageUrl": f"{gw.sim_url}/files/samples/square.png", "inputs": EXPAND},
            headers={"Authorization": f"Bearer {mine.token}"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["images"][0]["ossUrl"]
        async with gw.state.db.read() as conn:
            stored = (await conn.execute(select(media.c.sha256))).scalars().all()
            links = (
                await conn.execute(select(media_tokens.c.sha256, media_tokens.c.token_id))
            ).all()
        assert len(stored) == 1  # the output (the input was a URL)
        assert [(sha, token) for sha, token in links] == [(stored[0], mine.id)]
