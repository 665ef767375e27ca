"""Ground heights from the DEM (a COG in EPSG:3857 at ``<raster_dir>/dem.tif``).

A scene reads the DEM once for its bbox (:func:`read_dem`) and then samples every
vertex from that window with bilinear interpolation in numpy. Where the DEM has no
data (outside it, or nodata) heights are NaN and the callers fall back (building's
``ground_elev_m``, then 0 m) and say so in the scene metadata.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from rasterio.windows import Window

_TO_MERC = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
_FROM_MERC = pyproj.Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
_local = threading.local()


@dataclass
class DemWindow:
    """A block of DEM cells (float64, NaN = no data) with its 3857 geotransform."""

    data: np.ndarray  # (rows, cols)
    x0: float  # 3857 x of the left edge of column 0
    y0: float  # 3857 y of the top edge of row 0
    px: float  # cell width (m, mercator)
    py: float  # cell height (m, mercator, positive)

    @property
    def empty(self) -> bool:
        return self.data.size == 0 or bool(np.isnan(self.data).all())

    def sample(self, lon, lat) -> np.ndarray:  # noqa: ANN001 - array-likes
        """Bilinear heights at lon/lat (degrees); NaN where any neighbour has no data."""
        lon = np.asarray(lon, float)
        lat = np.asarray(lat, float)
        if self.data.size == 0:
            return np.full(lon.shape, np.nan)
        mx, my = _TO_MERC.transform(lon, lat)
        c = (np.asarray(mx) - self.x0) / self.px - 0.5
        r = (self.y0 - np.asarray(my)) / self.py - 0.5
        rows, cols = self.data.shape
        inside = (c >= -0.5) & (c <= cols - 0.5) & (r >= -0.5) & (r <= rows - 0.5)
        c = np.clip(c, 0, max(cols - 1, 0))
        r = np.clip(r, 0, max(rows - 1, 0))
        c0 = np.minimum(np.floor(c).astype(int), max(cols - 2, 0))
        r0 = np.minimum(np.floor(r).astype(int), max(rows - 2, 0))
        c1 = np.minimum(c0 + 1, cols - 1)
        r1 = np.minimum(r0 + 1, rows - 1)
        fc, fr = c - c0, r - r0
        d = self.data
        z = (d[r0, c0] * (1 - fc) * (1 - fr) + d[r0, c1] * fc * (1 - fr)
             + d[r1, c0] * (1 - fc) * fr + d[r1, c1] * fc * fr)
        return np.where(inside, z, np.nan)


def dem_path(raster_dir: Path | None) -> Path | None:
    """The DEM file of a raster folder, or None when there is none."""
    if raster_dir is None:
        return None
    p = Path(raster_dir) / "dem.tif"
    return p if p.is_file() else None


def _dataset(path: Path):  # noqa: ANN202 - a rasterio dataset, one per thread
    cache = getattr(_local, "ds", None)
    if cache is None:
        cache = _local.ds = {}
    key = (str(path), path.stat().st_mtime_ns)
    ds = cache.get(key)
    if ds is None:
        ds = cache[key] = rasterio.open(path)
    return ds


def read_dem(path: Path | None, bbox: tuple[float, float, float, float], margin_cells: int = 2) -> DemWindow:
    """The DEM cells covering ``bbox`` (lon/lat) plus a margin; an empty window if none."""
    if path is None:
        return DemWindow(np.zeros((0, 0)), 0.0, 0.0, 1.0, 1.0)
    ds = _dataset(path)
    xs, ys = _TO_MERC.transform([bbox[0], bbox[2], bbox[0], bbox[2]], [bbox[1], bbox[1], bbox[3], bbox[3]])
    t = ds.transform
    px, py = t.a, -t.e
    c0 = int(np.floor((min(xs) - t.c) / px)) - margin_cells
    c1 = int(np.ceil((max(xs) - t.c) / px)) + margin_cells
    r0 = int(np.floor((t.f - max(ys)) / py)) - margin_cells
    r1 = int(np.ceil((t.f - min(ys)) / py)) + margin_cells
    c0, r0 = max(c0, 0), max(r0, 0)
    c1, r1 = min(c1, ds.width), min(r1, ds.height)
    if c1 <= c0 or r1 <= r0:
        return DemWindow(np.zeros((0, 0)), 0.0, 0.0, px, py)
    data = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True).astype(float).filled(np.nan)
    return DemWindow(data, t.c + c0 * px, t.f - r0 * py, px, py)


def dem_bounds_lonlat(path: Path | None) -> tuple[float, float, float, float] | None:
    """The DEM's extent in lon/lat (for the tileset's terrain heights), or None."""
    if path is None:
        return None
    b = _dataset(path).bounds
    lon, lat = _FROM_MERC.transform([b.left, b.right], [b.bottom, b.top])
    return (float(lon[0]), float(lat[0]), float(lon[1]), float(lat[1]))
