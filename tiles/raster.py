"""Raster tiles from Cloud-Optimized GeoTIFFs (DEM, orthophoto) with rio-tiler.

Datasets are the ``*.tif`` files of one folder (``TwinSettings.raster_dir``), named by
their stem: ``dem.tif`` is dataset ``dem``. Every single-band dataset also has a
virtual twin ``{name}-hillshade`` that shades it (for clients such as WMTS that
cannot pass query parameters).

Tiles are in the WebMercatorQuad tile matrix set (EPSG:3857, zoom 0–24). A tile that
does not touch the dataset raises :class:`TileOutsideBounds` (HTTP 404, as TiTiler
does); a tile on the edge is returned with transparent pixels where there is no data.

Opening a COG costs a few milliseconds, so each worker thread keeps one open
rio-tiler ``Reader`` per dataset file version (:class:`RasterCatalog`). Nothing here
knows HTTP.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import morecantile
import numpy as np
from rio_tiler.errors import TileOutsideBounds as _RioTileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.utils import render

from tiles.colormaps import DEFAULT_COLORMAP, ColorMap, get_colormap
from tiles.hillshade import hillshade
from twin.errors import InvalidParameter, NotFound

#: GDAL settings for serving COGs; applied once as process defaults (an explicit
#: environment variable wins).
GDAL_DEFAULTS = {
    "GDAL_CACHEMAX": "512",  # MB of block cache shared by all readers
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # do not list the folder on every open
    "GDAL_NUM_THREADS": "1",  # we parallelise across requests, not inside one
    "VSI_CACHE": "TRUE",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
}


def configure_gdal() -> None:
    """Set :data:`GDAL_DEFAULTS` where the environment does not already say otherwise."""
    for key, value in GDAL_DEFAULTS.items():
        os.environ.setdefault(key, value)


configure_gdal()

WEB_MERCATOR: morecantile.TileMatrixSet = morecantile.tms.get("WebMercatorQuad")
MIN_ZOOM = 0
MAX_ZOOM = 24
TILE_SIZES = (256, 512)
HILLSHADE_SUFFIX = "-hillshade"
ALGORITHMS = ("hillshade",)

#: extension → (GDAL driver, media type, encoder options)
FORMATS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "png": ("PNG", "image/png", {"zlevel": 6}),
    "webp": ("WEBP", "image/webp", {"quality": 80}),
    "jpg": ("JPEG", "image/jpeg", {"quality": 85}),
    "jpeg": ("JPEG", "image/jpeg", {"quality": 85}),
}

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class DatasetNotFound(NotFound):
    """No raster dataset of that name in the raster folder (HTTP 404)."""

    code = "dataset_not_found"


class TileOutsideBounds(NotFound):
    """The requested tile does not touch the dataset (HTTP 404, TiTiler's behaviour)."""

    code = "tile_outside_bounds"


# --- request parameters --------------------------------------------------------------


@dataclass(frozen=True)
class TileParams:
    """How to render one tile.

    ``rescale`` maps ``(min, max)`` data values (e.g. metres of elevation) to 0–255
    before the colormap; ``None`` uses the dataset's minimum and maximum for non-byte
    data. ``colormap`` applies to single-band data (default :data:`DEFAULT_COLORMAP`).
    ``algorithm="hillshade"`` shades a DEM with light from ``azimuth`` (degrees from
    north) at ``altitude`` (degrees above the horizon), heights times ``z_factor``.
    """

    fmt: str = "png"
    tilesize: int = 256
    colormap: str | None = None
    rescale: tuple[float, float] | None = None
    algorithm: str | None = None
    azimuth: float = 315.0
    altitude: float = 45.0
    z_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise InvalidParameter(f"unsupported tile format {self.fmt!r}", detail={"formats": sorted(FORMATS)})
        if self.tilesize not in TILE_SIZES:
            raise InvalidParameter(f"tilesize must be one of {TILE_SIZES}", detail={"parameter": "tilesize"})
        if self.colormap is not None:
            get_colormap(self.colormap)  # validates the name
        if self.algorithm is not None and self.algorithm not in ALGORITHMS:
            raise InvalidParameter(
                f"unknown algorithm {self.algorithm!r}", detail={"parameter": "algorithm", "algorithms": ALGORITHMS}
            )
        if not 0.0 <= self.azimuth <= 360.0:
            raise InvalidParameter("azimuth must be within 0..360 degrees", detail={"parameter": "azimuth"})
        if not 0.0 <= self.altitude <= 90.0:
            raise InvalidParameter("altitude must be within 0..90 degrees", detail={"parameter": "altitude"})
        if not 0.0 < self.z_factor <= 1000.0:
            raise InvalidParameter("z_factor must be within (0, 1000]", detail={"parameter": "z_factor"})

    @property
    def media_type(self) -> str:
        return FORMATS[self.fmt][1]

    @cached_property
    def key(self) -> str:
        """A canonical text of every parameter, for cache keys and ETags."""
        return "|".join(f"{k}={v}" for k, v in sorted(asdict(self).items()))


def parse_rescale(text: str | None) -> tuple[float, float] | None:
    """``"min,max"`` → ``(min, max)`` with ``min < max``; ``None`` passes through."""
    if text is None or text == "":
        return None
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise InvalidParameter(
            f"rescale must be 'min,max' numbers, got {text!r}", detail={"parameter": "rescale"}
        ) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise InvalidParameter(f"rescale needs finite min < max, got {text!r}", detail={"parameter": "rescale"})
    return lo, hi


def check_tile_index(z: int, x: int, y: int) -> None:
    """:class:`InvalidParameter` unless ``z`` is within 0–24 and ``x``, ``y`` within ``0..2^z-1``."""
    if not MIN_ZOOM <= z <= MAX_ZOOM:
        raise InvalidParameter(f"zoom {z} outside {MIN_ZOOM}..{MAX_ZOOM}", detail={"parameter": "z"})
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise InvalidParameter(
            f"tile {z}/{x}/{y} does not exist: x and y must be within 0..{n - 1} at zoom {z}",
            detail={"parameter": "x" if not 0 <= x < n else "y"},
        )


# --- datasets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RasterDataset:
    """One servable dataset: a COG file (and the rendering it implies, for virtual ones)."""

    name: str
    path: Path
    mtime_ns: int
    size: int
    algorithm: str | None = None

    @property
    def fingerprint(self) -> str:
        """Changes whenever the file is replaced or rewritten."""
        return f"{self.path.name}:{self.mtime_ns}:{self.size}"

    def etag(self, z: int, x: int, y: int, params: TileParams) -> str:
        text = f"{self.name}|{self.fingerprint}|{z}/{x}/{y}|{params.key}"
        return '"' + hashlib.blake2b(text.encode(), digest_size=12).hexdigest() + '"'


@dataclass(frozen=True)
class BandStats:
    min: float
    max: float
    mean: float
    std: float
    p2: float
    p98: float
    valid_percent: float


@dataclass(frozen=True)
class RasterInfo:
    """What ``/raster/{dataset}/info`` reports. ``bounds`` are CRS84 lon/lat."""

    name: str
    bounds: tuple[float, float, float, float]
    crs: str
    dtype: str
    count: int
    width: int
    height: int
    nodata: float | None
    overviews: list[int]
    minzoom: int
    maxzoom: int
    colorinterp: list[str]
    statistics: dict[str, BandStats] = field(default_factory=dict)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.bounds[0] + self.bounds[2]) / 2, (self.bounds[1] + self.bounds[3]) / 2)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bounds"] = list(self.bounds)
        out["center"] = list(self.center)
        return out


class VirtualSource:
    """A computed raster dataset with no file (e.g. the dust heat map), registered on a catalogue.

    ``version()`` changes whenever the content would (it is part of the ETag and cache key);
    ``info()`` describes it; ``tile(z, x, y, tilesize)`` returns ``(RGB uint8 3×n×n, alpha uint8 n×n)``.
    """

    name: str

    def version(self) -> str:
        raise NotImplementedError

    def info(self) -> RasterInfo:
        raise NotImplementedError

    def tile(self, z: int, x: int, y: int, tilesize: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


VIRTUAL = "virtual"  # RasterDataset.algorithm of a virtual dataset


class RasterCatalog:
    """The raster datasets of one folder, with per-thread open readers and cached info."""

    #: how long a looked-up file's mtime/size is trusted before the next ``stat``
    recheck_s = 1.0

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._recent: dict[str, tuple[float, RasterDataset]] = {}
        self._local = threading.local()
        self._info: dict[str, RasterInfo] = {}
        self._lock = threading.Lock()
        self.virtual: dict[str, VirtualSource] = {}

    def register_virtual(self, source: VirtualSource) -> None:
        """Serve ``source`` as dataset ``source.name`` (a file of that name still wins)."""
        self.virtual[source.name] = source
        self._recent.pop(source.name, None)

    def _virtual(self, name: str) -> RasterDataset | None:
        src = self.virtual.get(name)
        if src is None:
            return None
        return RasterDataset(name, Path(VIRTUAL) / f"{name}@{src.version()}", 0, 0, VIRTUAL)

    # discovery
    def _file(self, name: str, algorithm: str | None = None) -> RasterDataset | None:
        path = self.directory / f"{name}.tif"
        try:
            st = path.stat()
        except OSError:
            return None
        return RasterDataset(name, path, st.st_mtime_ns, st.st_size, algorithm)

    def get(self, name: str) -> RasterDataset:
        """The dataset ``name``; :class:`DatasetNotFound` listing the known names otherwise.

        A found dataset is remembered for :attr:`recheck_s` seconds, so a replaced file is
        noticed within that time without a ``stat`` on every tile request.
        """
        now = time.monotonic()
        hit = self._recent.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        ds = self._lookup(name)
        if len(self._recent) < 1024:
            self._recent[name] = (now + self.recheck_s, ds)
        return ds

    def _lookup(self, name: str) -> RasterDataset:
        if _NAME.match(name):
            ds = self._file(name)
            if ds is not None:
                return ds
            if name.endswith(HILLSHADE_SUFFIX):
                base = self._file(name[: -len(HILLSHADE_SUFFIX)], "hillshade")
                if base is not None and self.info(base).count == 1:
                    return RasterDataset(name, base.path, base.mtime_ns, base.size, "hillshade")
            virtual = self._virtual(name)
            if virtual is not None:
                return virtual
        raise DatasetNotFound(f"unknown raster dataset {name!r}", detail={"known_datasets": self.names()})

    def datasets(self) -> list[RasterDataset]:
        """Every dataset: the files, the hillshade twins of the single-band ones, then the virtual ones."""
        files = [d for p in sorted(self.directory.glob("*.tif")) if (d := self._file(p.stem))]
        names = {d.name for d in files}
        twins = [
            RasterDataset(d.name + HILLSHADE_SUFFIX, d.path, d.mtime_ns, d.size, "hillshade")
            for d in files
            if self.info(d).count == 1 and d.name + HILLSHADE_SUFFIX not in names
        ]
        names |= {d.name for d in twins}
        virtual = [v for n in sorted(self.virtual) if n not in names and (v := self._virtual(n))]
        return files + twins + virtual

    def names(self) -> list[str]:
        return [d.name for d in self.datasets()]

    # readers
    def reader(self, ds: RasterDataset) -> Reader:
        """This thread's open reader of ``ds``'s file (reopened when the file changes)."""
        readers: dict[Path, tuple[str, Reader]] | None = getattr(self._local, "readers", None)
        if readers is None:
            readers = self._local.readers = {}
        held = readers.get(ds.path)
        if held is not None and held[0] == ds.fingerprint:
            return held[1]
        if held is not None:
            held[1].close()
        reader = Reader(str(ds.path), tms=WEB_MERCATOR)
        readers[ds.path] = (ds.fingerprint, reader)
        return reader

    # metadata
    def info(self, ds: RasterDataset) -> RasterInfo:
        """Bounds, type, overviews, zooms and band statistics (computed once per file version)."""
        if ds.algorithm == VIRTUAL:
            return self.virtual[ds.name].info()
        key = ds.fingerprint
        cached = self._info.get(key)
        if cached is not None:
            return RasterInfo(**{**asdict(cached), "name": ds.name}) if cached.name != ds.name else cached
        reader = self.reader(ds)
        src = reader.dataset
        stats = reader.statistics(max_size=1024, percentiles=[2, 98])
        info = RasterInfo(
            name=ds.name,
            bounds=tuple(float(v) for v in reader.get_geographic_bounds(WEB_MERCATOR.rasterio_geographic_crs)),
            crs=src.crs.to_string() if src.crs else "",
            dtype=src.dtypes[0],
            count=src.count,
            width=src.width,
            height=src.height,
            nodata=None if src.nodata is None else float(src.nodata),
            overviews=list(src.overviews(1)),
            minzoom=int(reader.minzoom),
            maxzoom=int(reader.maxzoom),
            colorinterp=[c.name for c in src.colorinterp],
            statistics={
                band: BandStats(
                    min=s.min, max=s.max, mean=s.mean, std=s.std,
                    p2=s.percentile_2, p98=s.percentile_98, valid_percent=s.valid_percent,
                )
                for band, s in stats.items()
            },
        )
        with self._lock:
            self._info[key] = info
        return info

    # tiles
    def tile_arrays(
        self, ds: RasterDataset, z: int, x: int, y: int, params: TileParams
    ) -> tuple[np.ndarray, np.ndarray, ColorMap | None]:
        """The tile before encoding: ``(uint8 bands × rows × cols, uint8 alpha 0/255, colormap)``."""
        check_tile_index(z, x, y)
        if ds.algorithm == VIRTUAL:
            data, alpha = self.virtual[ds.name].tile(z, x, y, params.tilesize)
            return data, alpha, None
        info = self.info(ds)
        reader = self.reader(ds)
        algorithm = params.algorithm or ds.algorithm
        if (params.colormap or algorithm) and info.count != 1:
            raise InvalidParameter(
                f"colormap and hillshade apply to single-band datasets; {ds.name!r} has {info.count} bands",
                detail={"parameter": "algorithm" if algorithm else "colormap"},
            )
        if not reader.tile_exists(x, y, z):
            raise TileOutsideBounds(
                f"tile {z}/{x}/{y} is outside the bounds of {ds.name!r}", detail={"bounds": list(info.bounds)}
            )
        try:
            if algorithm == "hillshade":
                return self._hillshade(reader, z, x, y, params)
            img = reader.tile(x, y, z, tilesize=params.tilesize)
        except _RioTileOutsideBounds as exc:
            raise TileOutsideBounds(str(exc)) from None
        colormap = None
        if info.count == 1:
            lo, hi = params.rescale or (info.statistics["b1"].min, info.statistics["b1"].max)
            img = img.rescale(in_range=((lo, hi),))
            colormap = get_colormap(params.colormap or DEFAULT_COLORMAP)
        elif params.rescale is not None:
            img = img.rescale(in_range=(params.rescale,) * info.count)
        elif info.dtype != "uint8":
            img = img.rescale(in_range=tuple((s.min, s.max) for s in info.statistics.values()))
        return img.data, img.mask, colormap

    def _hillshade(
        self, reader: Reader, z: int, x: int, y: int, params: TileParams
    ) -> tuple[np.ndarray, np.ndarray, None]:
        size = params.tilesize
        img = reader.tile(x, y, z, tilesize=size, buffer=1, indexes=1)
        band = img.array[0]
        bounds = WEB_MERCATOR.xy_bounds(morecantile.Tile(x, y, z))
        res = (bounds.right - bounds.left) / size
        shade, valid = hillshade(
            np.ma.getdata(band), ~np.ma.getmaskarray(band), bounds.top + res, res,
            azimuth=params.azimuth, altitude=params.altitude, z_factor=params.z_factor,
        )
        return shade[None], np.where(valid, 255, 0).astype("uint8"), None

    def render_tile(self, ds: RasterDataset, z: int, x: int, y: int, params: TileParams) -> bytes:
        """The encoded tile (PNG/WebP/JPEG bytes; JPEG has no transparency)."""
        driver, _, options = FORMATS[params.fmt]
        data, mask, colormap = self.tile_arrays(ds, z, x, y, params)
        if driver == "JPEG":
            return render(data, img_format=driver, colormap=colormap, **options)
        return render(data, mask, img_format=driver, colormap=colormap, **options)


@lru_cache(maxsize=8)
def catalog_for(directory: Path) -> RasterCatalog:
    """The shared catalogue of ``directory`` (one per process, so readers are reused)."""
    return RasterCatalog(directory)
