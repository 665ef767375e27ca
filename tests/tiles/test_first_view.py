"""The first view's tiles (tiles/first_view.py): the framing MapLibre's fitBounds gives, and the
tiles each kind of source asks for in it. The browser test (test_viewer_browser, bare_url) checks
the same against a real MapLibre: after the warm-up, the first visit renders no tile."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiles.first_view import PADDING_PX, first_view_tiles, fitted_view, parse_sizes
from tiles.tms import Tile, tile_bounds_lonlat

TOWN = (120.86, 31.68, 120.94, 31.72)


def test_sizes_are_parsed_or_refused():
    assert parse_sizes("1600x1080, 3520X2160") == [(1600, 1080), (3520, 2160)]
    assert parse_sizes("") == [] and parse_sizes(" , ") == []
    for bad in ("1600", "x1080", "1600x", "0x100", "ax b"):
        with pytest.raises(ValueError):
            parse_sizes(bad)


def _px(lon: float, lat: float, zoom: float) -> tuple[float, float]:
    world = 512 * 2**zoom
    return (lon + 180) / 360 * world, (1 - math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) / math.pi) / 2 * world


@given(w=st.integers(300, 4000), h=st.integers(300, 3000),
       west=st.floats(-170, 160), south=st.floats(-60, 50), dx=st.floats(0.001, 5), dy=st.floats(0.001, 5))
def test_the_framed_view_holds_the_bounds_with_the_padding_on_the_tight_side(w, h, west, south, dx, dy):
    bounds = (west, south, west + dx, south + dy)
    zoom, (vw, vs, ve, vn) = fitted_view(bounds, w, h)
    assert vw <= bounds[0] and ve >= bounds[2] and vs <= bounds[1] and vn >= bounds[3]
    x0, y1 = _px(bounds[0], bounds[1], zoom)
    x1, y0 = _px(bounds[2], bounds[3], zoom)
    # the tight side fills the map less the padding on both sides; the other fits within
    slack = min(w - 2 * PADDING_PX - (x1 - x0), h - 2 * PADDING_PX - (y1 - y0))
    assert abs(slack) < 1e-6 * max(w, h) + 1e-3
    # the view box is the map's size at that zoom
    vx0, vy1 = _px(vw, vs, zoom)
    vx1, vy0 = _px(ve, vn, zoom)
    assert abs((vx1 - vx0) - w) < 1e-3 and abs((vy1 - vy0) - h) < 1e-3


def test_vector_sources_floor_the_zoom_rasters_round_it_at_256_px():
    zoom, box = fitted_view(TOWN, 1600, 1080)
    vec = first_view_tiles(TOWN, [(1600, 1080)])
    ras = first_view_tiles(TOWN, [(1600, 1080)], tile_size=256, round_zoom=True)
    assert {t.z for t in vec} == {math.floor(zoom)}
    assert {t.z for t in ras} == {round(zoom + 1)}
    for tiles in (vec, ras):  # the tiles cover the view, and each touches it
        for t in tiles:
            w, s, e, n = tile_bounds_lonlat(t)
            assert w <= box[2] and e >= box[0] and s <= box[3] and n >= box[1]
        assert len(tiles) == len(set(tiles))
    # a bigger screen of the same town: one zoom up, about four times the tiles
    big = first_view_tiles(TOWN, [(3200, 2160)])
    assert {t.z for t in big} == {math.floor(zoom) + 1}
    both = first_view_tiles(TOWN, [(1600, 1080), (3200, 2160)])
    assert both == vec + big  # sizes in order, deduplicated


def test_source_bounds_and_zoom_range_limit_the_tiles():
    zoom, _ = fitted_view(TOWN, 1600, 1080)
    z = math.floor(zoom)
    # the orthophoto covers only the town's west half: no tile east of it is asked for
    half = (TOWN[0], TOWN[1], (TOWN[0] + TOWN[2]) / 2, TOWN[3])
    clipped = first_view_tiles(TOWN, [(1600, 1080)], source_bounds=half)
    assert clipped and all(tile_bounds_lonlat(t)[0] <= half[2] for t in clipped)
    assert set(clipped) < set(first_view_tiles(TOWN, [(1600, 1080)]))
    assert first_view_tiles(TOWN, [(1600, 1080)], source_bounds=(0, 0, 1, 1)) == []
    # above the source's maxzoom: its maxzoom tiles (overzoomed); below its minzoom: none
    assert {t.z for t in first_view_tiles(TOWN, [(1600, 1080)], maxzoom=z - 2)} == {z - 2}
    assert first_view_tiles(TOWN, [(1600, 1080)], minzoom=z + 1) == []
    assert all(isinstance(t, Tile) for t in clipped)
