"""The terrain surface of a scene: a regular grid over the bbox sampled from the DEM,
optionally draped with the orthophoto (``<raster_dir>/ortho.tif``) as a JPEG texture.

The grid is regular in Web Mercator (the rasters' CRS), so texture coordinates are
linear in it and the photo lines up with the DEM cells. Its spacing is the DEM's
resolution, coarsened so no side has more than ``cells`` cells.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj
import rasterio
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.windows import from_bounds

from scenes.dem import DemWindow
from scenes.frame import LocalFrame
from scenes.meshes import MeshPart, grid_surface

_TO_MERC = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
_FROM_MERC = pyproj.Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
MAX_TEXTURE_PX = 2048


def terrain_mesh(frame: LocalFrame, bbox: tuple[float, float, float, float], dem: DemWindow,
                 cells: int, textured: bool) -> MeshPart:
    """Height-field mesh of ``bbox`` (lon/lat); empty where the DEM has no data."""
    if dem.empty:
        return MeshPart.empty()
    (x0, x1), (y0, y1) = _TO_MERC.transform([bbox[0], bbox[2]], [bbox[1], bbox[3]])
    step = max(dem.px, (x1 - x0) / cells, (y1 - y0) / cells)
    nx = max(2, int(np.ceil((x1 - x0) / step)) + 1)
    ny = max(2, int(np.ceil((y1 - y0) / step)) + 1)
    xs = np.linspace(x0, x1, nx)
    ys = np.linspace(y1, y0, ny)  # north row first
    mx, my = np.meshgrid(xs, ys)
    lon, lat = _FROM_MERC.transform(mx.ravel(), my.ravel())
    z = dem.sample(lon, lat)
    valid = np.isfinite(z).reshape(ny, nx)
    enu = frame.to_enu(lon, lat, np.where(np.isfinite(z), z, 0.0)).reshape(ny, nx, 3)
    uvs = None
    if textured:
        u = (mx - x0) / (x1 - x0)
        v = (y1 - my) / (y1 - y0)
        uvs = np.stack([u, v], axis=-1)
    return grid_surface(enu, valid, uvs)


def ortho_jpeg(path: Path | None, bbox: tuple[float, float, float, float]) -> bytes | None:
    """The orthophoto over ``bbox`` as a JPEG (at most 2048 px a side), or None without one."""
    if path is None or not Path(path).is_file():
        return None
    (x0, x1), (y0, y1) = _TO_MERC.transform([bbox[0], bbox[2]], [bbox[1], bbox[3]])
    with rasterio.open(path) as ds:
        res = ds.transform.a
        w = int(min(MAX_TEXTURE_PX, max(2, round((x1 - x0) / res))))
        h = int(min(MAX_TEXTURE_PX, max(2, round((y1 - y0) / res))))
        win = from_bounds(x0, y0, x1, y1, ds.transform)
        bands = min(ds.count, 3)
        data = ds.read(list(range(1, bands + 1)), window=win, out_shape=(bands, h, w), boundless=True,
                       fill_value=0, resampling=Resampling.bilinear)
    if bands == 1:
        data = np.repeat(data, 3, axis=0)
    with MemoryFile() as mem:
        with mem.open(driver="JPEG", width=w, height=h, count=3, dtype="uint8", QUALITY=85) as dst:
            dst.write(data.astype(np.uint8))
        return bytes(mem.read())
