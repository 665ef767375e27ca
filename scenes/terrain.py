"""Terrain for CesiumJS: quantized-mesh 1.0 tiles and their ``layer.json`` from the DEM COG.

Tiling is Cesium's default ``GeographicTilingScheme`` (EPSG:4326, TMS rows counted from
the south): level ``z`` has ``2^(z+1)`` columns and ``2^z`` rows, each tile
``180° / 2^z`` wide and high. Every tile at every level up to the maximum zoom can be
asked for; ``layer.json`` lists as *available* both level-0 tiles (Cesium needs them)
and, below that, the tiles that touch the DEM, so Cesium asks only for those and draws
the rest of the globe from the upsampled parent. A tile off the DEM is the flat
ellipsoid (height 0).

A tile is built from a regular 65 × 65 grid of heights whose samples sit exactly on the
tile's vertex positions (the DEM window is read with rio-tiler, reprojected bilinearly
to EPSG:4326), simplified with Martini (pymartini, the RTIN algorithm behind
Mapbox's terrain meshes) to a tolerance that follows Cesium's own per-level error
estimate, then encoded (:mod:`scenes.quantized_mesh`) and gzipped. Heights are the DEM's
metres, taken as metres above the ellipsoid (no geoid model: the town's buildings and
pipes are placed from the same DEM, so they sit on this ground).

Nothing here knows HTTP. :class:`TerrainService` keeps a rio-tiler reader per thread and
an optional byte cache (any object with ``get``/``set``), keyed on the DEM file's
identity (path, size, mtime) so a replaced DEM gives new tiles.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
import rasterio.errors
from pymartini import Martini
from rasterio.warp import transform_bounds
from rio_tiler.io import Reader

from scenes.quantized_mesh import QMAX, TileMesh, encode_tile
from twin.errors import InvalidParameter, NotFound

#: Samples per tile side (2^6 + 1, what Martini needs and what Cesium's heightmaps use).
GRID = 65
#: Cesium's estimate of the geometric error of a level-0 tile (m): what it assumes a
#: level-z tile is accurate to (divided by 2^z) when it chooses levels.
LEVEL_ZERO_ERROR_M = 6378137.0 * 2 * math.pi * 0.25 / (GRID * 2)
#: Our meshes are this many times more accurate than Cesium's estimate for their level.
ERROR_MARGIN = 4.0
MAX_ZOOM_CAP = 20
#: Bump when the bytes of a tile change for the same DEM (invalidates cached tiles).
ENCODING_VERSION = "qm1"
OCT_VERTEX_NORMALS = "octvertexnormals"
MEDIA_TYPE = "application/vnd.quantized-mesh"


class TerrainNotAvailable(NotFound):
    """No terrain there: no DEM configured, or a level deeper than the terrain goes (HTTP 404)."""

    code = "terrain_not_available"


class ByteCache(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes) -> None: ...


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees of TMS tile ``z/x/y`` in Cesium's geographic scheme."""
    size = 180.0 / (1 << z)
    return -180.0 + x * size, -90.0 + y * size, -180.0 + (x + 1) * size, -90.0 + (y + 1) * size


def tiles_covering(bounds: tuple[float, float, float, float], z: int) -> tuple[int, int, int, int]:
    """Inclusive ``(start_x, start_y, end_x, end_y)`` of the level-``z`` tiles touching ``bounds``."""
    size = 180.0 / (1 << z)
    w, s, e, n = bounds
    nx, ny = 1 << (z + 1), 1 << z
    x0 = min(nx - 1, max(0, int(math.floor((w + 180.0) / size))))
    x1 = min(nx - 1, max(0, int(math.ceil((e + 180.0) / size)) - 1))
    y0 = min(ny - 1, max(0, int(math.floor((s + 90.0) / size))))
    y1 = min(ny - 1, max(0, int(math.ceil((n + 90.0) / size)) - 1))
    return x0, y0, max(x0, x1), max(y0, y1)


def check_tile_address(z: int, x: int, y: int, max_zoom: int) -> None:
    """400 for an address that cannot exist, 404 for a level deeper than the terrain goes."""
    if z < 0 or x < 0 or y < 0:
        raise InvalidParameter(f"tile {z}/{x}/{y}: numbers must not be negative", detail={"parameter": "z"})
    if z > max_zoom:
        raise TerrainNotAvailable(f"the terrain goes down to level {max_zoom}; level {z} is not available",
                                  detail={"maxzoom": max_zoom})
    if x >= 1 << (z + 1) or y >= 1 << z:
        raise InvalidParameter(
            f"tile {z}/{x}/{y} does not exist: at level {z} x is within 0..{(1 << (z + 1)) - 1} "
            f"and y within 0..{(1 << z) - 1}",
            detail={"parameter": "x" if x >= 1 << (z + 1) else "y"},
        )


def level_tolerance_m(z: int, max_zoom: int, finest_m: float) -> float:
    """How far (m) the simplified mesh of level ``z`` may depart from the DEM samples."""
    if z >= max_zoom:
        return finest_m
    return max(finest_m, LEVEL_ZERO_ERROR_M / (1 << z) / ERROR_MARGIN)


def wants_normals(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for vertex normals, as Cesium sends it
    (``application/vnd.quantized-mesh;extensions=octvertexnormals-watermask,…``)."""
    if not accept:
        return False
    for part in accept.split(","):
        for param in part.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "extensions" and OCT_VERTEX_NORMALS in value.strip().strip('"').split("-"):
                return True
    return False


@dataclass(frozen=True)
class DemInfo:
    """What the terrain needs to know about the DEM file."""

    path: Path
    fingerprint: str
    bounds: tuple[float, float, float, float]  # lon/lat degrees
    pixel_deg: float  # the finer of the pixel's width and height, in degrees
    nodata: float | None

    @property
    def natural_max_zoom(self) -> int:
        """The first level whose 65-sample grid is at least as fine as the DEM's pixels."""
        return max(0, min(MAX_ZOOM_CAP, math.ceil(math.log2(180.0 / ((GRID - 1) * self.pixel_deg)))))


def read_dem_info(path: Path) -> DemInfo:
    """The DEM's identity and extent; :class:`TerrainNotAvailable` if the file is not a readable raster."""
    st = path.stat()
    try:
        return _read_dem_info(path, st)
    except (rasterio.errors.RasterioError, ValueError) as exc:
        raise TerrainNotAvailable(f"the DEM {path.name} cannot be read as a georeferenced raster",
                                  detail={"dataset": path.stem, "error": str(exc)[:200]}) from None


def _read_dem_info(path: Path, st: os.stat_result) -> DemInfo:
    with rasterio.open(path) as src:
        if src.crs is None:
            raise ValueError("the raster has no CRS")
        bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
        w, s, e, n = (float(b) for b in bounds)
        pixel = min((e - w) / src.width, (n - s) / src.height)
        nodata = None if src.nodata is None else float(src.nodata)
    return DemInfo(path, f"{path.name}:{st.st_size}:{st.st_mtime_ns}", (w, s, e, n), pixel, nodata)


class TerrainService:
    """Quantized-mesh tiles and ``layer.json`` of one DEM file.

    ``max_zoom`` overrides the level derived from the DEM's resolution; ``finest_m`` is
    the simplification tolerance (m) at that deepest level. ``cache`` stores the gzipped
    tiles (the router passes the shared tile cache: memory plus Redis).
    """

    recheck_s = 1.0  # how long the DEM file's identity is trusted before the next stat

    def __init__(self, dem_path: Path, *, max_zoom: int | None = None, finest_m: float = 0.1,
                 cache: ByteCache | None = None):
        self.dem_path = Path(dem_path)
        self._max_zoom = max_zoom
        self.finest_m = finest_m
        self.cache = cache
        self._local = threading.local()
        self._info: tuple[float, DemInfo] | None = None

    # --- the DEM ------------------------------------------------------------------------
    def info(self) -> DemInfo:
        """The DEM's identity and extent, re-read when the file changes (checked once a second)."""
        now = time.monotonic()
        held = self._info
        if held is not None and held[0] > now:
            return held[1]
        try:
            st = self.dem_path.stat()
        except OSError:
            raise TerrainNotAvailable(f"no DEM at {self.dem_path.name}: load rasters first (twin demo does)",
                                      detail={"dataset": self.dem_path.stem}) from None
        fingerprint = f"{self.dem_path.name}:{st.st_size}:{st.st_mtime_ns}"
        info = held[1] if held is not None and held[1].fingerprint == fingerprint else read_dem_info(self.dem_path)
        self._info = (now + self.recheck_s, info)
        return info

    @property
    def max_zoom(self) -> int:
        return self._max_zoom if self._max_zoom is not None else self.info().natural_max_zoom

    def _reader(self, info: DemInfo) -> Reader:
        held = getattr(self._local, "reader", None)
        if held is not None and held[0] == info.fingerprint:
            return held[1]
        if held is not None:
            held[1].close()
        reader = Reader(str(info.path))
        self._local.reader = (info.fingerprint, reader)
        return reader

    def heights(self, z: int, x: int, y: int) -> np.ndarray:
        """The ``GRID × GRID`` heights (m) at the tile's vertex positions, row 0 = south edge.

        Only the vertices inside the DEM's extent are read (a level-0 tile spans a
        hemisphere, which Web Mercator cannot even represent); the rest, and the DEM's
        nodata, are the ellipsoid (0 m).
        """
        info = self.info()
        west, south, east, north = tile_bounds(z, x, y)
        dx, dy = (east - west) / (GRID - 1), (north - south) / (GRID - 1)
        w, s, e, n = info.bounds
        i0, i1 = max(0, math.ceil((w - west) / dx)), min(GRID - 1, math.floor((e - west) / dx))
        j0, j1 = max(0, math.ceil((s - south) / dy)), min(GRID - 1, math.floor((n - south) / dy))
        grid = np.zeros((GRID, GRID), dtype=np.float64)
        if i0 > i1 or j0 > j1:
            return grid
        bbox = (west + (i0 - 0.5) * dx, south + (j0 - 0.5) * dy, west + (i1 + 0.5) * dx, south + (j1 + 0.5) * dy)
        try:
            img = self._reader(info).part(
                bbox, dst_crs="EPSG:4326", bounds_crs="EPSG:4326", width=i1 - i0 + 1, height=j1 - j0 + 1,
                indexes=1, resampling_method="bilinear", reproject_method="bilinear",
            )
        except rasterio.errors.RasterioError as exc:  # a damaged file: say so, never a 500
            raise TerrainNotAvailable(f"the DEM {info.path.name} could not be read for tile {z}/{x}/{y}",
                                      detail={"error": str(exc)[:200]}) from None
        band = img.array[0]
        values = np.ma.filled(band.astype(np.float64), 0.0)
        values[~np.isfinite(values)] = 0.0
        grid[j0:j1 + 1, i0:i1 + 1] = values[::-1]  # image rows run north→south
        return grid

    # --- tiles ----------------------------------------------------------------------------
    def mesh(self, z: int, x: int, y: int) -> TileMesh:
        """The simplified mesh of tile ``z/x/y`` in tile coordinates (u, v 0..32767)."""
        check_tile_address(z, x, y, self.max_zoom)
        grid = self.heights(z, x, y)
        martini = getattr(self._local, "martini", None)
        if martini is None:
            martini = self._local.martini = Martini(GRID)
        terrain = grid.astype(np.float32)
        vertices, triangles = martini.create_tile(terrain.ravel()).get_mesh(
            level_tolerance_m(z, self.max_zoom, self.finest_m))
        cols, rows = vertices.reshape(-1, 2).T.astype(np.int64)
        scale = QMAX / (GRID - 1)
        return TileMesh(
            u=np.round(cols * scale).astype(np.int64), v=np.round(rows * scale).astype(np.int64),
            heights=grid[rows, cols], triangles=triangles.reshape(-1, 3).astype(np.int64),
        )

    def tile_key(self, z: int, x: int, y: int, normals: bool) -> str:
        """Changes with the DEM file, the level settings and the encoder; ETag and cache key."""
        check_tile_address(z, x, y, self.max_zoom)
        text = (f"{ENCODING_VERSION}|{self.info().fingerprint}|{self.max_zoom}|{self.finest_m}|"
                f"{z}/{x}/{y}|{int(normals)}")
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()

    def tile(self, z: int, x: int, y: int, *, normals: bool = False) -> bytes:
        """The gzipped quantized-mesh tile (cached when a cache is set)."""
        check_tile_address(z, x, y, self.max_zoom)
        key = "terrain:" + self.tile_key(z, x, y, normals)
        body = self.cache.get(key) if self.cache is not None else None
        if body is None:
            raw = encode_tile(self.mesh(z, x, y), tile_bounds(z, x, y), normals=normals)
            body = gzip.compress(raw, compresslevel=6, mtime=0)
            if self.cache is not None:
                self.cache.set(key, body)
        return body

    def available_tiles(self) -> list[tuple[int, int, int]]:
        """Every tile ``layer.json`` lists as available, level by level."""
        out = []
        for z, ranges in enumerate(self.layer_json()["available"]):
            for r in ranges:
                out += [(z, x, y) for x in range(r["startX"], r["endX"] + 1) for y in range(r["startY"], r["endY"] + 1)]
        return out

    def export(self, directory: Path, *, normals: bool = True,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Write ``layer.json`` and every available tile (gzipped, ``{z}/{x}/{y}.terrain``) under ``directory``.

        For static hosting: the server must send the ``.terrain`` files with
        ``Content-Encoding: gzip`` (as Cesium's own tilesets are hosted); ``layer.json``
        says whether they carry vertex normals.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tiles = self.available_tiles()
        written = 0
        for i, (z, x, y) in enumerate(tiles):
            path = directory / str(z) / str(x) / f"{y}.terrain"
            path.parent.mkdir(parents=True, exist_ok=True)
            body = self.tile(z, x, y, normals=normals)
            path.write_bytes(body)
            written += len(body)
            if progress:
                progress(i + 1, len(tiles))
        doc = self.layer_json()
        if not normals:
            doc["extensions"] = []
        (directory / "layer.json").write_text(json.dumps(doc, indent=1))
        return {"tiles": len(tiles), "bytes": written, "maxzoom": doc["maxzoom"], "normals": normals}

    def close(self) -> None:
        """Let go of the cache's connections (Redis)."""
        close = getattr(self.cache, "close", None)
        if close is not None:
            close()

    def layer_json(self, *, name: str = "twin terrain") -> dict[str, Any]:
        """Cesium's terrain metadata (a TileJSON 2.1-like document, as Cesium's own servers give)."""
        info = self.info()
        max_zoom = self.max_zoom
        available: list[list[dict[str, int]]] = [[{"startX": 0, "startY": 0, "endX": 1, "endY": 0}]]
        for z in range(1, max_zoom + 1):
            x0, y0, x1, y1 = tiles_covering(info.bounds, z)
            available.append([{"startX": x0, "startY": y0, "endX": x1, "endY": y1}])
        version = hashlib.blake2b(f"{ENCODING_VERSION}|{info.fingerprint}|{max_zoom}|{self.finest_m}".encode(),
                                  digest_size=6).hexdigest()
        return {
            "tilejson": "2.1.0",
            "name": name,
            "description": f"Quantized-mesh terrain from {info.path.name}; heights in metres above the WGS84 "
                           "ellipsoid, 0 outside the DEM",
            "version": "1.0.0",
            "format": "quantized-mesh-1.0",
            "scheme": "tms",
            "projection": "EPSG:4326",
            "tiles": ["{z}/{x}/{y}.terrain?v=" + version],
            "minzoom": 0,
            "maxzoom": max_zoom,
            "bounds": [round(b, 7) for b in info.bounds],
            "available": available,
            "extensions": [OCT_VERTEX_NORMALS],
            "attribution": "twin sample town DEM",
        }
