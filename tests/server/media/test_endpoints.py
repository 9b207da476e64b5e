"""Media through the gateway: image inputs as data URLs, outputs mirrored, /media serving,
S3-compatible storage (a real moto server), retention."""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ability_gateway.server.models import media
from tests.server.conftest import Live, LiveFactory
from tests.server.media.conftest import S3Server

OUTPAINT = "ability_coze_outpaint"
EXPAND = {"expand_top": 0, "expand_bottom": 0, "expand_left": 10, "expand_right": 20}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def sample_png(gw: Live) -> bytes:
    async with httpx.AsyncClient() as plain:
        return (await plain.get(f"{gw.sim_url}/files/samples/square.png")).content


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode()


async def test_a_base64_image_is_stored_and_passed_to_the_workflow_by_url(
    live: LiveFactory,
) -> None:
    async with live() as gw:
        png = await sample_png(gw)
        response = await gw.invoke(OUTPAINT, {"imageBase64": data_url(png), "inputs": EXPAND})
        assert response.status_code == 200, response.text
        body = response.json()
        async with gw.state.db.read() as conn:
            stored = (await conn.execute(select(media.c.key, media.c.content_type))).all()
        async with httpx.AsyncClient() as plain:
            result = await plain.get(body["images"][0]["ossUrl"])
    # The workflow read the image from our URL: its output is 512+30 wide.
    assert png_size(result.content) == (542, 512)
    assert ("image/png",) in [(row.content_type,) for row in stored]
    assert len(stored) == 2  # the input and the mirrored output


@pytest.mark.parametrize(
    ("payload", "status", "field", "problem"),
    [
        (
            {"imageBase64": "not a data url"},
            400,
            "imageBase64",
            "must look like data:image/png;base64,<data>",
        ),
        ({"imageBase64": "data:image/png;base64,@@@@"}, 400, "imageBase64", "is not valid base64"),
        (
            {"imageBase64": "data:image/png;base64," + base64.b64encode(b"%PDF-1.4 ...").decode()},
            400,
            "imageBase64",
            "is not a PNG, JPEG, WebP or GIF image",
        ),
        (
            {
                "imageBase64": "data:image/jpeg;base64,"
                + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 32).decode()
            },
            400,
            "imageBase64",
            "is declared image/jpeg but its bytes are image/png",
        ),
        (
            {
                "imageBase64": "data:image/png;base64,iVBORw0KGgo=",
                "imageUrl": "https://e.com/a.png",
            },
            400,
            "imageBase64",
            "give either imageUrl or imageBase64, not both",
        ),
        (
            {
                "imageBase64": "data:image/png;base64,iVBORw0KGgo=",
                "inputs": {"Url": "https://e.com/a.png"},
            },
            400,
            "imageBase64",
            "give the image either as imageBase64 or as inputs.Url",
        ),
    ],
)
async def test_bad_base64_images_are_refused(
    live: LiveFactory, payload: dict[str, Any], status: int, field: str, problem: str
) -> None:
    async with live() as gw:
        body = {"inputs": EXPAND, **payload}
        if "inputs" in payload:
            body["inputs"] = {**EXPAND, **payload["inputs"]}
        response = await gw.invoke(OUTPAINT, body)
    assert response.status_code == status, response.text
    assert response.json()["errors"] == [{"field": field, "problem": problem}]


async def test_wrapped_unpadded_and_uppercase_base64_is_accepted(live: LiveFactory) -> None:
    async with live() as gw:
        png = await sample_png(gw)
        encoded = base64.b64encode(png).decode().rstrip("=")
        wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
        response = await gw.invoke(
            OUTPAINT, {"imageBase64": "DATA:IMAGE/PNG;BASE64," + wrapped + "\n", "inputs": EXPAND}
        )
    assert response.status_code == 200, response.text


async def test_a_too_large_image_is_413(live: LiveFactory) -> None:
    async with live(max_image_bytes=1000) as gw:
        png = await sample_png(gw)
        response = await gw.invoke(OUTPAINT, {"imageBase64": data_url(png), "inputs": EXPAND})
    assert response.status_code == 413
    assert response.json()["code"] == 413
    assert response.json()["message"] == "The image is larger than 1000 bytes"


async def test_media_is_served_with_type_caching_and_ranges(live: LiveFactory) -> None:
    async with live() as gw:
        response = await gw.invoke(
            OUTPAINT, {"imageUrl": f"{gw.sim_url}/files/samples/square.png", "inputs": EXPAND}
        )
        url = response.json()["images"][0]["ossUrl"]
        async with httpx.AsyncClient() as plain:
            whole = await plain.get(url)
            part = await plain.get(url, headers={"Range": "bytes=0-7"})
            tail = await plain.get(url, headers={"Range": "bytes=-4"})
            beyond = await plain.get(url, headers={"Range": f"bytes={len(whole.content)}-"})
            head = await plain.head(url)
            cached = await plain.get(url, headers={"If-None-Match": whole.headers["etag"]})
            several = await plain.get(url, headers={"Range": "bytes=0-1,3-4"})
            missing = await plain.get(f"{gw.url}/media/2026/01/nothing.png")
            escape = await plain.get(f"{gw.url}/media/..%2F..%2Fgateway.db")
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "image/png"
    assert whole.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert whole.headers["accept-ranges"] == "bytes"
    assert part.status_code == 206
    assert part.content == whole.content[:8]
    assert part.headers["content-range"] == f"bytes 0-7/{len(whole.content)}"
    assert tail.content == whole.content[-4:]
    assert beyond.status_code == 416
    assert beyond.json()["code"] == 416
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(whole.content))
    assert cached.status_code == 304
    assert whole.headers["etag"].count('"') == 2
    assert several.status_code == 200  # ranges we do not serve: the whole file
    assert several.content == whole.content
    assert missing.status_code == 404
    assert missing.json()["code"] == 404
    assert escape.status_code == 404


async def test_the_same_output_is_stored_once(live: LiveFactory) -> None:
    async with live() as gw:
        payload = {"imageUrl": f"{gw.sim_url}/files/samples/square.png", "inputs": EXPAND}
        first = (await gw.invoke(OUTPAINT, payload)).json()
        second = (await gw.invoke(OUTPAINT, payload)).json()
        async with gw.state.db.read() as conn:
            count = len((await conn.execute(select(media.c.key))).all())
    assert first["images"][0]["ossUrl"] == second["images"][0]["ossUrl"]
    assert count == 1


async def test_a_failed_mirror_leaves_oss_url_null_with_a_warning(live: LiveFactory) -> None:
    # The simulator's loopback output URLs are refused (it may read its own loopback input).
    async with live(egress_allow="", coze_allow_internal_image_urls=True) as gw:
        response = await gw.invoke(
            OUTPAINT, {"imageUrl": f"{gw.sim_url}/files/samples/square.png", "inputs": EXPAND}
        )
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "succeeded"
    assert body["images"][0]["ossUrl"] is None
    assert body["images"][0]["sourceUrl"].startswith(gw.sim_url)
    assert body["metadata"]["warnings"][0].endswith(": refused: not a public address")


async def test_outputs_are_mirrored_into_s3_with_presigned_urls(
    live: LiveFactory, s3_server: S3Server, s3_bucket: str
) -> None:
    async with live(
        storage_url=f"s3://{s3_bucket}/gateway",
        s3_endpoint=s3_server.endpoint,
        s3_region=s3_server.region,
        s3_access_key_id=s3_server.access_key_id,
        s3_secret_access_key=s3_server.secret_access_key,
    ) as gw:
        response = await gw.invoke(
            OUTPAINT, {"imageUrl": f"{gw.sim_url}/files/samples/square.png", "inputs": EXPAND}
        )
        image = response.json()["images"][0]
        async with httpx.AsyncClient() as plain:
            source = await plain.get(image["sourceUrl"])
            ours = await plain.get(image["ossUrl"])
    assert image["ossUrl"].startswith(s3_server.endpoint)
    assert "X-Amz-Signature" in image["ossUrl"]
    assert ours.status_code == 200
    assert ours.content == source.content
    listed = s3_server.client().list_objects_v2(Bucket=s3_bucket)
    assert all(o["Key"].startswith("gateway/") for o in listed["Contents"])


async def test_unused_media_is_deleted_by_retention(live: LiveFactory) -> None:
    async with live(media_retention_days=0.00002) as gw:  # about 1.7 s
        response = await gw.invoke(
            OUTPAINT, {"imageUrl": f"{gw.sim_url}/files/samples/square.png", "inputs": EXPAND}
        )
        url = response.json()["images"][0]["ossUrl"]
        async with httpx.AsyncClient() as plain:
            assert (await plain.get(url)).status_code == 200
            for _ in range(200):
                async with gw.state.db.read() as conn:
                    left = (await conn.execute(select(media.c.key))).all()
                if not left:
                    break
                await asyncio.sleep(0.1)
                gw.state.runner.wake()
            gone = await plain.get(url)
    assert left == []
    assert gone.status_code == 404


async def test_media_answers_carry_nosniff_and_the_contents_sha256_as_etag(
    live: LiveFactory,
) -> None:
    import hashlib
    import os
    from pathlib import Path
    from urllib.parse import urlsplit

    async with live() as gw:
        response = await gw.invoke(
            OUTPAINT, {"imageUrl": f"{gw.sim_url}/files/samples/square.png", "inputs": EXPAND}
        )
        url = response.json()["images"][0]["ossUrl"]
        key = urlsplit(url).path.removeprefix("/media/")
        async with gw.state.db.read() as conn:
            digest = (await conn.execute(select(media.c.sha256).where(media.c.key == key))).scalar()
        async with httpx.AsyncClient() as plain:
            whole = await plain.get(url)
            # The file's inode and times say nothing: touching it changes no answer.
            stored = Path(urlsplit(gw.state.settings.resolved_storage_url).path) / key
            os.utime(stored, (1_000_000_000, 1_000_000_000))
            answers = {
                "whole": await plain.get(url),
                "range": await plain.get(url, headers={"Range": "bytes=0-7"}),
                "head": await plain.head(url),
                "cached": await plain.get(url, headers={"If-None-Match": f'"x", W/"{digest}"'}),
                "unsatisfiable": await plain.get(url, headers={"Range": "bytes=99999999-"}),
                "missing": await plain.get(f"{gw.url}/media/2026/01/nothing.png"),
            }
    assert digest == hashlib.sha256(whole.content).hexdigest()
    assert whole.headers["etag"] == f'"{digest}"'
    assert [a.status_code for a in answers.values()] == [200, 206, 200, 304, 416, 404]
    for name, answer in answers.items():
        assert answer.headers["x-content-type-options"] == "nosniff", name
        if name not in ("unsatisfiable", "missing"):
            assert answer.headers["etag"] == f'"{digest}"', name
