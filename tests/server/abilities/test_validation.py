from __future__ import annotations

from typing import Any

import pytest

from ability_gateway.server.abilities.catalog import Catalog
from ability_gateway.server.abilities.validation import build_parameters, check_image_urls
from ability_gateway.server.addresses import parse_allow_list
from ability_gateway.server.errors import BadRequest

CATALOG = Catalog.load()
IMG = "https://example.com/a.png"


def problems(ability_id: str, inputs: dict[str, Any], image_url: str | None = None) -> list[Any]:
    ability = CATALOG.get(ability_id)
    assert ability is not None
    with pytest.raises(BadRequest) as info:
        build_parameters(ability, inputs, image_url)
    return [(e["field"], e["problem"]) for e in info.value.extra["errors"]]


def params(ability_id: str, inputs: dict[str, Any], image_url: str | None = None) -> Any:
    ability = CATALOG.get(ability_id)
    assert ability is not None
    return build_parameters(ability, inputs, image_url)


OUTPAINT = {"Url": IMG, "expand_bottom": 0, "expand_left": 10, "expand_right": 10, "expand_top": 0}


def test_missing_required_field() -> None:
    assert problems("ability_coze_prompt_extract", {}) == [("inputs.url", "is required")]


def test_wrong_type() -> None:
    assert problems("ability_coze_upscale_8k", {"url": IMG, "bianchang": "4096"}) == [
        ("inputs.bianchang", "must be a number")
    ]
    assert problems("ability_coze_prompt_extract", {"url": 5}) == [
        ("inputs.url", "must be a string")
    ]


def test_booleans_are_not_numbers() -> None:
    assert problems("ability_coze_upscale_8k", {"url": IMG, "bianchang": True}) == [
        ("inputs.bianchang", "must be a number")
    ]


def test_unknown_field() -> None:
    assert problems("ability_coze_tagging_small", {"url": IMG, "color": "red"}) == [
        ("inputs.color", "is not an input of this ability")
    ]


def test_moxing_outside_one_two_three() -> None:
    assert problems("ability_coze_outpaint", {**OUTPAINT, "moxing": "4"}) == [
        ("inputs.moxing", "must be one of '1', '2', '3'")
    ]
    assert params("ability_coze_outpaint", {**OUTPAINT, "moxing": "2"})["moxing"] == "2"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (8193, "must be at most 8192"),
        (0, "must be greater than 0"),
        (-5, "must be greater than 0"),
        (100.5, "must be an integer"),
    ],
)
def test_bianchang_bounds(value: float, problem: str) -> None:
    assert problems("ability_coze_upscale_8k", {"url": IMG, "bianchang": value}) == [
        ("inputs.bianchang", problem)
    ]


def test_bianchang_8192_and_integral_float_pass() -> None:
    assert params("ability_coze_upscale_8k", {"url": IMG, "bianchang": 8192})["bianchang"] == 8192
    converted = params("ability_coze_upscale_8k", {"url": IMG, "bianchang": 2048.0})
    assert converted["bianchang"] == 2048
    assert isinstance(converted["bianchang"], int)


def test_every_problem_is_reported_at_once() -> None:
    found = problems("ability_coze_outpaint", {"Url": "ftp://x", "expand_top": -1, "zz": 1})
    assert ("inputs.zz", "is not an input of this ability") in found
    assert ("inputs.Url", "must be an http(s) URL") in found
    assert ("inputs.expand_top", "must be at least 0") in found
    assert ("inputs.expand_left", "is required") in found
    assert len(found) == 6


def test_image_url_fills_the_image_field() -> None:
    assert params("ability_coze_prompt_extract", {}, IMG) == {"url": IMG}
    assert (
        params("ability_coze_outpaint", {k: v for k, v in OUTPAINT.items() if k != "Url"}, IMG)[
            "Url"
        ]
        == IMG
    )


def test_image_url_and_image_field_together_is_an_error() -> None:
    assert problems("ability_coze_prompt_extract", {"url": IMG}, IMG) == [
        ("imageUrl", "give the image either as imageUrl or as inputs.url")
    ]


def test_image_url_must_be_http() -> None:
    assert problems("ability_coze_prompt_extract", {}, "file:///etc/passwd") == [
        ("imageUrl", "must be an http(s) URL")
    ]


def test_empty_required_string() -> None:
    assert problems("ability_coze_prompt_extract", {"url": "  "}) == [
        ("inputs.url", "must not be empty")
    ]


def test_null_optional_input_is_dropped() -> None:
    assert params("ability_coze_prompt_extract", {"url": IMG, "shuru": None}) == {"url": IMG}


def test_moxing_may_be_the_integer_naming_a_model() -> None:
    assert params("ability_coze_outpaint", {**OUTPAINT, "moxing": 3})["moxing"] == "3"
    assert problems("ability_coze_outpaint", {**OUTPAINT, "moxing": 4}) == [
        ("inputs.moxing", "must be a string")
    ]


# --- caller-supplied image URLs under the egress policy ---------------------------------


def image_problems(
    ability_id: str,
    inputs: dict[str, Any],
    image_url: str | None = None,
    allow: str = "",
    internal_allowed: bool = False,
) -> list[Any]:
    ability = CATALOG.get(ability_id)
    assert ability is not None
    try:
        check_image_urls(
            ability, inputs, image_url, parse_allow_list(allow), internal_allowed=internal_allowed
        )
    except BadRequest as exc:
        return [(e["field"], e["problem"]) for e in exc.extra["errors"]]
    return []


NON_PUBLIC = "points at a private, loopback or otherwise non-public address"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254./latest/meta-data/",
        "http://127.0.0.1:8080/a.png",
        "http://2130706433/a.png",
        "http://[::ffff:10.0.0.1]/a.png",
        "http://[fec0::1]/a.png",
        "http://192.0.0.8/a.png",
    ],
)
def test_an_image_url_at_a_literal_non_public_address_is_refused(url: str) -> None:
    assert image_problems("ability_coze_prompt_extract", {}, url) == [("imageUrl", NON_PUBLIC)]
    assert image_problems("ability_coze_prompt_extract", {"url": url}) == [
        ("inputs.url", NON_PUBLIC)
    ]


def test_the_outpaint_image_input_is_checked_by_its_own_name() -> None:
    inputs = {**OUTPAINT, "Url": "http://10.1.2.3/a.png"}
    assert image_problems("ability_coze_outpaint", inputs) == [("inputs.Url", NON_PUBLIC)]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://localhost:8080/a.png", "names a loopback host"),
        ("http://LOCALHOST./a.png", "names a loopback host"),
        ("http://metadata.google.internal/computeMetadata/v1/", "names a host of a local network"),
        ("http://printer.local/a.png", "names a host of a local network"),
    ],
)
def test_an_image_url_naming_a_local_host_is_refused(url: str, problem: str) -> None:
    assert image_problems("ability_coze_prompt_extract", {"url": url}) == [("inputs.url", problem)]


def test_the_egress_allow_list_opens_image_urls_as_it_opens_callbacks() -> None:
    for url in ("http://127.0.0.1:8080/a.png", "http://localhost:8080/a.png"):
        assert (
            image_problems("ability_coze_prompt_extract", {"url": url}, allow="127.0.0.0/8") == []
        )
    assert image_problems(
        "ability_coze_prompt_extract", {"url": "http://10.0.0.1/a.png"}, allow="127.0.0.0/8"
    ) == [("inputs.url", NON_PUBLIC)]


def test_an_executor_meant_to_read_internal_urls_takes_them() -> None:
    url = "http://169.254.169.254/latest/meta-data/"
    assert image_problems("ability_coze_prompt_extract", {"url": url}, internal_allowed=True) == []


def test_public_image_urls_pass() -> None:
    assert image_problems("ability_coze_prompt_extract", {"url": IMG}) == []
    assert image_problems("ability_coze_prompt_extract", {}, "https://8.8.8.8/a.png") == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        # Other parsers (WHATWG, Go) decode a percent-escaped host: 169.254.169.254.
        ("http://169.254.169.254%2e/latest/meta-data/", "is not a valid URL"),
        ("http://%31%32%37.0.0.1/a.png", "is not a valid URL"),
        ("http://loc%61lhost/a.png", "is not a valid URL"),
        # Userinfo is where parsers disagree most: never taken.
        ("http://127.0.0.1:80@img.example.org/a.png", "must not carry credentials"),
        ("http://user:pw@img.example.org/a.png", "must not carry credentials"),
        ("http://img.example.org\\@127.0.0.1/a.png", "must not carry credentials"),
    ],
)
def test_an_image_url_spelled_to_confuse_parsers_is_refused(url: str, problem: str) -> None:
    assert image_problems("ability_coze_prompt_extract", {"url": url}) == [("inputs.url", problem)]
