"""The simulator's image downloader stays on loopback unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from ability_gateway.simulator.png import render_png
from ability_gateway.simulator.sources import SourceImageError, SourceImages, is_loopback_host
from tests.loopback_guard import loopback_guard

from .conftest import ImageHost


async def _size(sources: SourceImages, url: str) -> tuple[int, int]:
    await sources.start()
    try:
        return await sources.size(url, own_origins=())
    finally:
        await sources.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://your-server.test/image.png",
        "https://example.com/image.png",
        "http://10.0.0.1/image.png",
        "http://[2001:db8::1]/image.png",
    ],
)
async def test_an_outside_url_is_refused_before_it_is_resolved(tmp_path: Path, url: str) -> None:
    refused = pytest.raises(SourceImageError, match="refused: the simulator downloads only from")
    with loopback_guard.capture(tmp_path / "records.jsonl") as records, refused:
        await _size(SourceImages(), url)
    assert records == []


async def test_a_loopback_url_is_downloaded(image_host: ImageHost) -> None:
    image_host.files["/small.png"] = ("image/png", render_png(30, 20))
    assert await _size(SourceImages(), image_host.url + "/small.png") == (30, 20)


async def test_allow_remote_lets_it_try_an_outside_url(tmp_path: Path) -> None:
    with (
        loopback_guard.capture(tmp_path / "records.jsonl") as records,
        pytest.raises(SourceImageError),
    ):
        await _size(SourceImages(allow_remote=True), "http://your-server.test/image.png")
    # It tried: the tests' guard refused the look-up (a simulator test must not leave loopback).
    assert [r["target"] for r in records] == [repr("your-server.test")]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1.", True),
        ("127.1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("your-server.test", False),
        ("192.168.1.1", False),
    ],
)
def test_loopback_hosts_are_recognised(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
