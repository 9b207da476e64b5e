from __future__ import annotations

import pytest

from ability_gateway.simulator.files import (
    SAMPLES,
    FileRef,
    generated_path,
    parse_file_path,
    sample_path,
)


def test_generated_path_round_trips() -> None:
    path = generated_path(640, 480, "outpaint-abc")
    assert path == "/files/640x480/outpaint-abc.png"
    ref = parse_file_path(path)
    assert isinstance(ref, FileRef)
    assert (ref.width, ref.height) == (640, 480)


def test_name_seeds_the_pattern() -> None:
    first = parse_file_path("/files/10x10/a.png")
    second = parse_file_path("/files/10x10/b.png")
    assert first is not None
    assert second is not None
    assert first.seed != second.seed
    assert first == parse_file_path("/files/10x10/a.png")


def test_samples_include_the_documented_sizes() -> None:
    assert SAMPLES["landscape"] == (1024, 768)
    assert SAMPLES["square"] == (512, 512)
    ref = parse_file_path(sample_path("landscape"))
    assert ref is not None
    assert (ref.width, ref.height) == (1024, 768)


def test_unknown_sample_name_is_an_error_for_the_builder() -> None:
    with pytest.raises(KeyError, match="unknown sample"):
        sample_path("nope")


@pytest.mark.parametrize(
    "path",
    [
        "/files/0x10/a.png",
        "/files/10x0/a.png",
        "/files/16385x10/a.png",
        "/files/10x10/a.jpg",
        "/files/10x10/../a.png",
        "/files/10x10/a b.png",
        "/files/samples/nope.png",
        "/files/ax10/a.png",
        "/healthz",
    ],
)
def test_paths_that_name_no_file(path: str) -> None:
    assert parse_file_path(path) is None
