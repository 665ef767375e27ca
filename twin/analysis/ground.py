"""Ground elevation from the DEM Cloud-Optimized GeoTIFF, bilinear, at lon/lat points.

The DEM may be in any projected CRS (the sample town's is EPSG:3857); points are
transformed with pyproj and only the window around them is read (a COG reads just
those blocks). Outside the DEM or on nodata the elevation is NaN, so callers can fall
back to the pipe records' own depths and say so.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.windows import Window


class GroundModel:
    """Bilinear elevation sampler over one DEM file (metres, the file's vertical datum)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        with rasterio.open(self.path) as ds:
            self.crs = ds.crs.to_wkt()
            self.transform = ds.transform
            self.width, self.height = ds.width, ds.height
            self.nodata = ds.nodata
        self._to_dem = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)

    def _ds(self):  # noqa: ANN202 - one open dataset per thread (GDAL handles are not thread-safe)
        ds = getattr(self._local, "ds", None)
        if ds is None:
            ds = self._local.ds = rasterio.open(self.path)
        return ds

    def elevation(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Elevation at each lon/lat (NaN outside the DEM or on nodata)."""
        lon = np.atleast_1d(np.asarray(lon, dtype=float))
        lat = np.atleast_1d(np.asarray(lat, dtype=float))
        out = np.full(lon.shape, np.nan)
        if lon.size == 0:
            return out
        x, y = self._to_dem.transform(lon, lat)
        inv = ~self.transform
        col, row = inv * (np.asarray(x), np.asarray(y))
        col, row = np.asarray(col) - 0.5, np.asarray(row) - 0.5  # pixel-centre coordinates
        ok = np.isfinite(col) & np.isfinite(row) & (col >= -0.5) & (row >= -0.5) & \
            (col <= self.width - 0.5) & (row <= self.height - 0.5)
        if not ok.any():
            return out
        c0 = int(max(np.floor(col[ok].min()), 0))
        r0 = int(max(np.floor(row[ok].min()), 0))
        c1 = int(min(np.floor(col[ok].max()) + 2, self.width))
        r1 = int(min(np.floor(row[ok].max()) + 2, self.height))
        z = self._ds().read(1, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True).astype(float).filled(np.nan)
        cc = np.clip(col[ok] - c0, 0, z.shape[1] - 1)
        rr = np.clip(row[ok] - r0, 0, z.shape[0] - 1)
        ci = np.minimum(np.floor(cc).astype(int), max(z.shape[1] - 2, 0))
        ri = np.minimum(np.floor(rr).astype(int), max(z.shape[0] - 2, 0))
        fc, fr = cc - ci, rr - ri
        ci1 = np.minimum(ci + 1, z.shape[1] - 1)
        ri1 = np.minimum(ri + 1, z.shape[0] - 1)
        v = (z[ri, ci] * (1 - fc) * (1 - fr) + z[ri, ci1] * fc * (1 - fr)
             + z[ri1, ci] * (1 - fc) * fr + z[ri1, ci1] * fc * fr)
        out[ok] = v
        return out


@lru_cache(maxsize=8)
def _model(path: str, mtime_ns: int) -> GroundModel:
    return GroundModel(Path(path))


def ground_model(path: Path) -> GroundModel | None:
    """The (cached) model of the DEM at ``path``, or ``None`` when there is no DEM."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return _model(str(path), st.st_mtime_ns)


__all__ = ["GroundModel", "ground_model"]
