"""The tiles of the viewer's first view, worked out as MapLibre does, so a server can render them
before the first visitor asks (``TWIN_FIRST_VIEW_WARM``; gis_api/routers/tiles.py).

The big screen (``GET /``) opens framed on the data extent (the style's ``metadata["twin:bounds"]``)
with ``fitBounds(bounds, {padding: 24})`` at pitch 0. For a map canvas of ``width`` × ``height``
CSS pixels that fixes the zoom and the centre, hence the tiles each source asks for:

* vector sources (512 px tiles): every tile at ``floor(zoom)`` touching the view;
* raster sources with 256 px tiles (the orthophoto): ``round(zoom + 1)`` (MapLibre rounds the
  zoom of raster sources), within the source's bounds and zoom range.

Plain maths, no database, no HTTP (as :mod:`tiles.tms`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from tiles.tms import MAX_LAT, Tile, tiles_for_bbox

#: MapLibre's world size at zoom 0 (its tiles are 512 px)
WORLD_PX = 512.0
#: The viewer's framing padding (static/viewer.js ``fitBoundsOptions``)
PADDING_PX = 24


def _merc(lon: float, lat: float) -> tuple[float, float]:
    """lon/lat → MapLibre world coordinates in 0..1 (x east, y south)."""
    lat = max(min(lat, MAX_LAT), -MAX_LAT)
    x = (lon + 180.0) / 360.0
    y = (180.0 - math.degrees(math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)))) / 360.0
    return x, y


def _unmerc(x: float, y: float) -> tuple[float, float]:
    lon = x * 360.0 - 180.0
    lat = math.degrees(2 * math.atan(math.exp(math.radians(180.0 - y * 360.0))) - math.pi / 2)
    return lon, lat


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"1600x1080,3520x2160"`` → ``[(1600, 1080), (3520, 2160)]`` (empty text: none)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        w, sep, h = part.lower().partition("x")
        if not sep or not w.isdigit() or not h.isdigit() or int(w) < 1 or int(h) < 1:
            raise ValueError(f"a map size is WIDTHxHEIGHT in pixels, not {part!r}")
        out.append((int(w), int(h)))
    return out


def fitted_view(bounds: Sequence[float], width: int, height: int, padding: int = PADDING_PX,
                max_zoom: float = 22.0) -> tuple[float, tuple[float, float, float, float]]:
    """The zoom and the lon/lat box on screen of ``fitBounds(bounds, {padding})`` on a
    ``width`` × ``height`` map at pitch 0, bearing 0 (MapLibre's ``cameraForBounds``)."""
    x0, y1 = _merc(bounds[0], bounds[1])
    x1, y0 = _merc(bounds[2], bounds[3])
    dx, dy = max(x1 - x0, 1e-12) * WORLD_PX, max(y1 - y0, 1e-12) * WORLD_PX
    scale = min((width - 2 * padding) / dx, (height - 2 * padding) / dy)
    zoom = min(math.log2(max(scale, 1e-12)), max_zoom)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    world = WORLD_PX * 2 ** zoom
    hw, hh = width / 2 / world, height / 2 / world
    west, north = _unmerc(cx - hw, cy - hh)
    east, south = _unmerc(cx + hw, cy + hh)
    return zoom, (west, south, east, north)


def _clip(box: Sequence[float], to: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    if to is None:
        return (box[0], box[1], box[2], box[3])
    w, s, e, n = max(box[0], to[0]), max(box[1], to[1]), min(box[2], to[2]), min(box[3], to[3])
    return (w, s, e, n) if w < e and s < n else None


def first_view_tiles(bounds: Sequence[float], sizes: Iterable[tuple[int, int]], *, tile_size: int = 512,
                     minzoom: int = 0, maxzoom: int = 22, source_bounds: Sequence[float] | None = None,
                     round_zoom: bool = False) -> list[Tile]:
    """The tiles one source draws in the framed first view, for each map size (deduplicated, in order).

    ``tile_size``: the source's tile size (512 for vector sources, 256 for the orthophoto);
    ``round_zoom``: MapLibre rounds the zoom of raster sources and floors that of vector ones.
    A zoom above ``maxzoom`` asks for ``maxzoom`` tiles (overzoomed); below ``minzoom``, nothing.
    """
    out: dict[Tile, None] = {}
    for width, height in sizes:
        zoom, box = fitted_view(bounds, width, height)
        z_float = zoom + math.log2(WORLD_PX / tile_size)
        z = int(round(z_float) if round_zoom else math.floor(z_float))
        z = min(max(z, 0), maxzoom)
        if z < minzoom:
            continue
        area = _clip(box, source_bounds)
        if area is None:
            continue
        out.update(dict.fromkeys(tiles_for_bbox(area, z)))
    return list(out)


__all__ = ["PADDING_PX", "first_view_tiles", "fitted_view", "parse_sizes"]
