"""From a workflow's End-node output to the spec's result shape (texts, images, videos, assets).

How to read an output is the catalog's ``output.kind``:

    text   the output is the text (a prompt)
    json   the output is JSON (tags): its text, plus the parsed value as an asset
    media  every http(s) URL found in the output, however nested, is an image or video
"""

from __future__ import annotations

from typing import Any

import orjson

from ability_gateway.server.abilities.catalog import AbilityDefinition
from ability_gateway.server.providers.coze.parsing import end_output, loads_or_text

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".m3u8", ".avi", ".mkv")
MAX_DEPTH = 8


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def find_urls(value: Any, depth: int = 0) -> list[str]:
    """http(s) URLs in strings, lists, objects and JSON held in strings, in order, once each."""
    found: list[str] = []
    if depth > MAX_DEPTH:
        return found
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("http://", "https://")) and not any(c.isspace() for c in text):
            found.append(text)
        elif text[:1] in ("{", "[", '"'):
            decoded = loads_or_text(text)
            if decoded is not value and not isinstance(decoded, str | bytes):
                found.extend(find_urls(decoded, depth + 1))
    elif isinstance(value, list):
        for item in value:
            found.extend(find_urls(item, depth + 1))
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(find_urls(item, depth + 1))
    return list(dict.fromkeys(found))


def _media_type(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    return "video" if path.endswith(VIDEO_SUFFIXES) else "image"


def media_entries(urls: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``images`` and ``videos`` entries for source URLs (``ossUrl`` stays None: not mirrored)."""
    images: list[dict[str, Any]] = []
    videos: list[dict[str, Any]] = []
    for url in urls:
        kind = _media_type(url)
        (videos if kind == "video" else images).append(
            {"ossUrl": None, "sourceUrl": url, "type": kind}
        )
    return images, videos


def shape_output(ability: AbilityDefinition, data: Any) -> dict[str, Any]:
    """``texts``, ``images``, ``videos`` and ``assets`` from the run's ``data``."""
    output = end_output(data)
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    videos: list[dict[str, Any]] = []
    assets: list[dict[str, Any]] = []
    kind = ability.output.kind
    if kind == "text":
        if output is not None:
            texts.append(_text(output))
    elif kind == "json":
        parsed = loads_or_text(output)
        if output is not None:
            texts.append(_text(output))
        assets.append(
            {
                "type": "json",
                "name": ability.output.name or "output",
                "data": parsed if not isinstance(parsed, str) else None,
            }
        )
    elif kind == "media":
        images, videos = media_entries(find_urls(loads_or_text(data)))
        if output is not None and not images and not videos:
            texts.append(_text(output))
    return {"texts": texts, "images": images, "videos": videos, "assets": assets}
