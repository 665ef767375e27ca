"""Cesium's geographic tiling, the tile-address checks and the Accept parser, property-tested."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scenes.terrain import (
    TerrainNotAvailable,
    check_tile_address,
    tile_bounds,
    tiles_covering,
    wants_normals,
)
from twin.errors import InvalidParameter


@st.composite
def lonlat_boxes(draw):
    w = draw(st.floats(-180, 179.9))
    s = draw(st.floats(-90, 89.9))
    return w, s, draw(st.floats(w, 180)), draw(st.floats(s, 90))


@given(box=lonlat_boxes(), z=st.integers(0, 20))
def test_the_covering_range_is_exactly_the_tiles_that_touch_the_box(box, z):
    x0, y0, x1, y1 = tiles_covering(box, z)
    assert 0 <= x0 <= x1 < 2 ** (z + 1) and 0 <= y0 <= y1 < 2**z
    w, s, e, n = box
    west, south, _, _ = tile_bounds(z, x0, y0)
    _, _, east, north = tile_bounds(z, x1, y1)
    eps = 1e-9  # degrees: a box ending a hair past a tile edge may round onto it
    assert west <= w + eps and south <= s + eps and east >= e - eps and north >= n - eps  # the range holds the box
    # and no column or row of it lies wholly outside the box
    assert tile_bounds(z, x0, y0)[2] >= w and tile_bounds(z, x0, y0)[3] >= s
    if x1 > x0:
        assert tile_bounds(z, x1, y0)[0] < e
    if y1 > y0:
        assert tile_bounds(z, x0, y1)[1] < n


@given(z=st.integers(0, 22), x=st.integers(0, 2**23), y=st.integers(0, 2**22))
def test_tile_bounds_nest_in_their_parent(z, x, y):
    x, y = x % (2 ** (z + 1)), y % (2**z)
    w, s, e, n = tile_bounds(z, x, y)
    assert -180 <= w < e <= 180 and -90 <= s < n <= 90
    if z:
        pw, ps, pe, pn = tile_bounds(z - 1, x // 2, y // 2)
        assert pw <= w and ps <= s and e <= pe and n <= pn


@given(z=st.integers(-5, 40), x=st.integers(-10, 2**41), y=st.integers(-10, 2**41))
def test_any_tile_address_is_accepted_or_refused_with_a_clear_error(z, x, y):
    try:
        check_tile_address(z, x, y, max_zoom=15)
    except (InvalidParameter, TerrainNotAvailable) as exc:
        assert exc.message
    else:
        assert 0 <= z <= 15 and 0 <= x < 2 ** (z + 1) and 0 <= y < 2**z


@given(st.text(max_size=300))
def test_the_accept_parser_takes_any_text(text):
    assert wants_normals(text) in (True, False)


@pytest.mark.parametrize(("accept", "normals"), [
    ("application/vnd.quantized-mesh;extensions=octvertexnormals,application/octet-stream;q=0.9,*/*;q=0.01", True),
    ("application/vnd.quantized-mesh;extensions=octvertexnormals-watermask-metadata,*/*;q=0.01", True),
    ("application/vnd.quantized-mesh;extensions=watermask-metadata,*/*;q=0.01", False),
    ("application/vnd.quantized-mesh,application/octet-stream;q=0.9", False),
    ('application/vnd.quantized-mesh; extensions="octvertexnormals"', True),
    ("*/*", False),
    (None, False),
])
def test_cesiums_accept_headers_ask_for_normals_only_when_they_name_them(accept, normals):
    assert wants_normals(accept) is normals
