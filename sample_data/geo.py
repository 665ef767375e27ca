"""Coordinate frame of the sample town.

All generation happens in a local metric frame (metres east/north of the town
origin) that is EPSG:4528 (CGCS2000 / 3-degree Gauss-Kruger zone 40, CM 120°E)
shifted by the origin's projected coordinates, so areas and lengths computed in
it are EPSG:4528 metres.  :meth:`Frame.to_lonlat` turns local geometries into
EPSG:4326 lon/lat for the store; :meth:`Frame.to_mercator` into EPSG:3857 for
the rasters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyproj
import shapely

METRIC_CRS = "EPSG:4528"


@dataclass
class Frame:
    lon0: float = 120.9
    lat0: float = 31.7
    _fwd: pyproj.Transformer = field(init=False, repr=False)
    _inv: pyproj.Transformer = field(init=False, repr=False)
    _merc: pyproj.Transformer = field(init=False, repr=False)
    _merc_inv: pyproj.Transformer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._fwd = pyproj.Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
        self._inv = pyproj.Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)
        self._merc = pyproj.Transformer.from_crs(METRIC_CRS, "EPSG:3857", always_xy=True)
        self._merc_inv = pyproj.Transformer.from_crs("EPSG:3857", METRIC_CRS, always_xy=True)
        self.x0, self.y0 = self._fwd.transform(self.lon0, self.lat0)

    # --- arrays -------------------------------------------------------------
    def lonlat_to_xy(self, lon, lat):
        x, y = self._fwd.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
        return np.asarray(x) - self.x0, np.asarray(y) - self.y0

    def xy_to_lonlat(self, x, y):
        lon, lat = self._inv.transform(np.asarray(x, dtype=float) + self.x0, np.asarray(y, dtype=float) + self.y0)
        return np.asarray(lon), np.asarray(lat)

    def xy_to_merc(self, x, y):
        mx, my = self._merc.transform(np.asarray(x, dtype=float) + self.x0, np.asarray(y, dtype=float) + self.y0)
        return np.asarray(mx), np.asarray(my)

    def merc_to_xy(self, mx, my):
        x, y = self._merc_inv.transform(np.asarray(mx, dtype=float), np.asarray(my, dtype=float))
        return np.asarray(x) - self.x0, np.asarray(y) - self.y0

    # --- geometries ---------------------------------------------------------
    def _apply(self, geoms, fn):
        arr = np.asarray(geoms, dtype=object)
        if arr.size == 0:
            return arr

        def tf(coords: np.ndarray) -> np.ndarray:
            a, b = fn(coords[:, 0], coords[:, 1])
            return np.column_stack([a, b])

        return shapely.transform(arr, tf)

    def to_lonlat(self, geoms):
        return self._apply(geoms, self.xy_to_lonlat)

    def to_mercator(self, geoms):
        return self._apply(geoms, self.xy_to_merc)

    def to_xy(self, geoms):
        return self._apply(geoms, self.lonlat_to_xy)


def rect_polygons(cx, cy, w, d, angle) -> np.ndarray:
    """Rotated rectangles: centre (cx, cy), width ``w`` along ``angle`` (radians), depth ``d`` across."""
    cx, cy, w, d, angle = (np.asarray(v, dtype=float) for v in (cx, cy, w, d, angle))
    ux, uy = np.cos(angle), np.sin(angle)
    vx, vy = -uy, ux
    hw, hd = w / 2, d / 2
    sx = np.array([-1, 1, 1, -1, -1])
    sy = np.array([-1, -1, 1, 1, -1])
    xs = cx[:, None] + sx * (hw * ux)[:, None] + sy * (hd * vx)[:, None]
    ys = cy[:, None] + sx * (hw * uy)[:, None] + sy * (hd * vy)[:, None]
    return shapely.polygons(np.stack([xs, ys], axis=-1))
