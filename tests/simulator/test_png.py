from __future__ import annotations

import os
import zlib

import pytest

from ability_gateway.simulator.png import MAX_SIDE, adler32_combine, render_png

from .pngcheck import check_png, decode_rgb_rows


@pytest.mark.parametrize(
    ("width", "height"), [(1, 1), (3, 2), (1, 100), (100, 1), (1024, 768), (333, 777)]
)
def test_png_is_valid_with_exact_size(width: int, height: int) -> None:
    info, raw = check_png(render_png(width, height, seed=5), keep_raw=True)
    assert (info.width, info.height, info.bit_depth, info.color_type) == (width, height, 8, 2)
    assert info.chunk_types == [b"IHDR", b"IDAT", b"IEND"]
    assert info.raw_length == height * (1 + 3 * width)
    assert len(decode_rgb_rows(raw, width, height)) == height


def test_8192_square_png_is_valid_and_small() -> None:
    data = render_png(8192, 8192, seed=1)
    info, _ = check_png(data)
    assert (info.width, info.height) == (8192, 8192)
    assert info.raw_length == 8192 * (1 + 3 * 8192)
    assert len(data) < 1_000_000


def test_largest_side_is_accepted() -> None:
    info, _ = check_png(render_png(MAX_SIDE, 2))
    assert (info.width, info.height) == (MAX_SIDE, 2)


def test_pixels_form_bands_of_gradients() -> None:
    _, raw = check_png(render_png(64, 48, seed=9), keep_raw=True)
    rows = decode_rgb_rows(raw, 64, 48)
    assert len(set(rows)) > 1, "the image is not a single flat colour"
    assert rows[0] == rows[1], "rows repeat within a band"
    assert len({rows[0][i : i + 3] for i in range(0, 64 * 3, 3)}) > 1, "a row is a gradient"


def test_same_seed_gives_same_bytes_and_other_seeds_differ() -> None:
    assert render_png(200, 100, seed=1) == render_png(200, 100, seed=1)
    assert render_png(200, 100, seed=1) != render_png(200, 100, seed=2)


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-1, 5), (MAX_SIDE + 1, 1)])
def test_out_of_range_size_is_rejected(width: int, height: int) -> None:
    with pytest.raises(ValueError, match=r"within 1\.\."):
        render_png(width, height)


@pytest.mark.parametrize(("len1", "len2"), [(0, 0), (1, 0), (0, 7), (100, 65521), (70000, 200000)])
def test_adler32_combine_matches_zlib(len1: int, len2: int) -> None:
    first, second = os.urandom(len1), os.urandom(len2)
    combined = adler32_combine(zlib.adler32(first), zlib.adler32(second), len2)
    assert combined == zlib.adler32(first + second)
