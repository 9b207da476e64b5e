from __future__ import annotations

from typing import Any

import pytest

from ability_gateway.server.abilities.catalog import Catalog
from ability_gateway.server.abilities.validation import build_parameters
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
