"""Web Mercator tile arithmetic (WebMercatorQuad, XYZ addressing, y down from the north).

Everything in here is plain maths: no database, no HTTP. Bounds are in EPSG:3857
metres unless the name says ``lonlat``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from twin.errors import InvalidParameter, LimitExceeded

#: Half the width of the Web Mercator world in metres (2πR / 2 with R = 6 378 137 m).
ORIGIN_SHIFT = 20037508.342789244
WORLD_SIZE = 2 * ORIGIN_SHIFT
#: Largest zoom served; deeper requests are refused (nothing in a town needs < 1 cm pixels).
MAX_ZOOM = 24
#: Tile extent in MVT grid units and the buffer (grid units) geometries keep past the edge.
EXTENT = 4096
BUFFER = 64
#: Display tile size in CSS pixels; thresholds in ``*_px`` are in these pixels.
TILE_PX = 256
MAX_LAT = 85.0511287798066


@dataclass(frozen=True, slots=True)
class Tile:
    """One XYZ tile address."""

    z: int
    x: int
    y: int

    def __str__(self) -> str:
        return f"{self.z}/{self.x}/{self.y}"


def check_tile(z: int, x: int, y: int) -> Tile:
    """The tile ``z/x/y``, or :class:`InvalidParameter` if it is outside the pyramid."""
    if not 0 <= z <= MAX_ZOOM:
        raise InvalidParameter(f"zoom {z} out of range 0..{MAX_ZOOM}", detail={"z": z, "max_zoom": MAX_ZOOM})
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise InvalidParameter(
            f"tile {z}/{x}/{y} outside the matrix: x and y must be in 0..{n - 1} at zoom {z}",
            detail={"z": z, "x": x, "y": y},
        )
    return Tile(z, x, y)


#: One tile number as written in an address: ASCII digits only, at most 9 of them.
TILE_NUMBER_PATTERN = r"^[0-9]{1,9}$"
_TILE_NUMBER = re.compile(r"[0-9]{1,9}")


def parse_tile_number(text: str, name: str) -> int:
    """One part of a tile address (zoom, column or row) as a non-negative integer.

    Only ASCII digits: ``str.isdigit`` also accepts ``²`` (which ``int`` then refuses)
    and ``int`` reads ``٣`` and full-width ``３`` — one tile must have one address, the
    one its cache key and ETag are made of. Raises :class:`InvalidParameter` naming
    the part (``name``); ranges are checked by :func:`check_tile`.
    """
    if not _TILE_NUMBER.fullmatch(text):
        raise InvalidParameter(
            f"{name} must be a non-negative integer in ASCII digits, not {text[:20]!r}", detail={"parameter": name}
        )
    return int(text)


def parse_tile(z: str, x: str, y: str) -> Tile:
    """Parse path parts (decimal integers) into a checked :class:`Tile`."""
    return check_tile(parse_tile_number(z, "z"), parse_tile_number(x, "x"), parse_tile_number(y, "y"))


def parse_layer_list(raw: str, max_layers: int) -> tuple[str, ...]:
    """``a,b,c`` → ``("a", "b", "c")`` (duplicates dropped, order kept); bounded in length."""
    names = tuple(dict.fromkeys(p for p in raw.split(",") if p))
    if not names:
        raise InvalidParameter("no layer given", detail={"layers": raw})
    if len(names) > max_layers:
        raise LimitExceeded(
            f"{len(names)} layers requested; at most {max_layers} per tile",
            detail={"max_layers": max_layers},
        )
    return names


def tile_bounds(tile: Tile) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of ``tile`` in EPSG:3857 metres."""
    size = WORLD_SIZE / (1 << tile.z)
    minx = -ORIGIN_SHIFT + tile.x * size
    maxy = ORIGIN_SHIFT - tile.y * size
    return (minx, maxy - size, minx + size, maxy)


def mercator_to_lonlat(x: float, y: float) -> tuple[float, float]:
    lon = x / ORIGIN_SHIFT * 180.0
    lat = math.degrees(2 * math.atan(math.exp(y / 6378137.0)) - math.pi / 2)
    return lon, lat


def lonlat_to_mercator(lon: float, lat: float) -> tuple[float, float]:
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    x = lon / 180.0 * ORIGIN_SHIFT
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * 6378137.0
    return x, y


def tile_bounds_lonlat(tile: Tile, buffer_units: int = 0) -> tuple[float, float, float, float]:
    """(west, south, east, north) of ``tile`` in degrees, grown by ``buffer_units`` MVT grid units."""
    minx, miny, maxx, maxy = tile_bounds(tile)
    pad = (maxx - minx) * buffer_units / EXTENT
    w, s = mercator_to_lonlat(minx - pad, miny - pad)
    e, n = mercator_to_lonlat(maxx + pad, maxy + pad)
    return (max(w, -180.0), max(s, -90.0), min(e, 180.0), min(n, 90.0))


def pixel_size(z: int) -> float:
    """Size of one 256-px display pixel at zoom ``z``, in EPSG:3857 metres."""
    return WORLD_SIZE / (TILE_PX * (1 << z))


def tiles_for_bbox(bbox_lonlat: tuple[float, float, float, float], z: int) -> Iterator[Tile]:
    """Every tile at zoom ``z`` that touches the lon/lat box, row by row."""
    x0, y0 = _tile_of(bbox_lonlat[0], bbox_lonlat[3], z)
    x1, y1 = _tile_of(bbox_lonlat[2], bbox_lonlat[1], z)
    for y in range(y0, y1 + 1):
        for x in range(x0, x1 + 1):
            yield Tile(z, x, y)


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 1 << z
    mx, my = lonlat_to_mercator(lon, lat)
    x = int((mx + ORIGIN_SHIFT) / WORLD_SIZE * n)
    y = int((ORIGIN_SHIFT - my) / WORLD_SIZE * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def bbox_intersects(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] <= b[2] and a[2] >= b[0] and a[1] <= b[3] and a[3] >= b[1]


__all__ = [
    "BUFFER", "EXTENT", "MAX_ZOOM", "TILE_PX", "Tile", "bbox_intersects", "check_tile", "lonlat_to_mercator",
    "TILE_NUMBER_PATTERN", "mercator_to_lonlat", "parse_layer_list", "parse_tile", "parse_tile_number", "pixel_size", "tile_bounds", "tile_bounds_lonlat",
    "tiles_for_bbox",
]
