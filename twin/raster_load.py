"""Loading a GeoTIFF as the twin's DEM or orthophoto: a Cloud-Optimized GeoTIFF in EPSG:3857.

``load_raster("dem.tif", "dem", settings.raster_dir, crs="EPSG:4528")`` checks
the source (a CRS — from the file or ``crs=`` —, a sane extent, nodata for a
DEM), warps it to Web Mercator with rasterio's :class:`~rasterio.vrt.WarpedVRT`
and writes a COG with rio-cogeo into ``TWIN_HOME/rasters/<kind>.tif`` (via a
temporary file renamed at the end, so a failed load leaves the old raster).
The style and WMTS then pick it up because the file exists.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from twin.errors import InvalidParameter, LoadFailed, UnsupportedFormat

KINDS = {"dem": {"bands": (1,), "resampling": "bilinear"}, "ortho": {"bands": (1, 2, 3, 4), "resampling": "bilinear"}}


@dataclass
class RasterReport:
    kind: str
    path: str
    source_crs: str
    crs_origin: str  # "file" | "argument"
    width: int
    height: int
    bands: int
    dtype: str
    nodata: float | None
    bounds_wgs84: tuple[float, float, float, float]
    replaced: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_raster(path: Path, kind: str, raster_dir: Path, *, crs: str | None = None, nodata: float | None = None,
                replace: bool = True) -> RasterReport:
    """Convert ``path`` to the twin's ``kind`` raster (``dem`` or ``ortho``); see the module docstring."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioIOError
    from rasterio.vrt import WarpedVRT
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    from twin.crs import parse_crs

    t0 = time.perf_counter()
    if kind not in KINDS:
        raise InvalidParameter(f"raster kind must be one of {sorted(KINDS)}, not {kind!r}")
    if not path.exists():
        raise LoadFailed(f"file not found: {path}")
    out = raster_dir / f"{kind}.tif"
    existed = out.exists()
    if existed and not replace:
        raise InvalidParameter(f"raster {kind!r} exists; load with --mode replace to replace it")
    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise UnsupportedFormat(f"cannot read {path.name!r} as a raster ({str(exc).splitlines()[0][:200]})") from exc
    with src:
        if crs:
            src_crs = rasterio.crs.CRS.from_user_input(parse_crs(crs).to_wkt())
            origin = "argument"
        elif src.crs:
            src_crs, origin = src.crs, "file"
        else:
            raise InvalidParameter(f"{path.name!r} has no CRS; give it with crs= (--crs EPSG:4528)")
        if src.transform.is_identity:
            raise InvalidParameter(f"{path.name!r} has no georeferencing (no geotransform)")
        if kind == "dem" and src.count != 1:
            raise InvalidParameter(f"a DEM has one band; {path.name!r} has {src.count}")
        if kind == "ortho" and src.count not in (3, 4):
            raise InvalidParameter(f"an orthophoto has 3 (RGB) or 4 (RGBA) bands; {path.name!r} has {src.count}")
        nd = nodata if nodata is not None else src.nodata
        if kind == "dem" and nd is None and src.dtypes[0].startswith("float"):
            nd = -9999.0  # areas outside the warped DEM must be nodata, not 0 m
        bounds = _wgs84_bounds(src_crs, src.bounds)
        vrt_opts: dict[str, Any] = {"crs": "EPSG:3857", "src_crs": src_crs, "resampling": Resampling.bilinear}
        if nd is not None:
            vrt_opts.update(src_nodata=nd, nodata=nd)
        raster_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{kind}-", suffix=".tif", dir=raster_dir)
        os.close(fd)
        try:
            with WarpedVRT(src, **vrt_opts) as vrt:
                profile = cog_profiles.get("deflate")
                cog_translate(vrt, tmp, profile, nodata=nd, in_memory=False, quiet=True,
                              overview_resampling="average" if kind == "dem" else "bilinear")
                width, height, count, dtype = vrt.width, vrt.height, vrt.count, vrt.dtypes[0]
            os.replace(tmp, out)
        except Exception:
            Path(tmp).unlink(missing_ok=True)
            raise
    return RasterReport(kind=kind, path=str(out), source_crs=_label(src_crs), crs_origin=origin, width=width,
                        height=height, bands=count, dtype=dtype, nodata=nd, bounds_wgs84=bounds, replaced=existed,
                        seconds=round(time.perf_counter() - t0, 3))


def _label(crs: Any) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else str(crs.to_string())[:80]


def _wgs84_bounds(src_crs: Any, b: Any) -> tuple[float, float, float, float]:
    """The raster's extent in lon/lat; refuses one that cannot be on Earth in that CRS."""
    from rasterio.warp import transform_bounds

    try:
        w, s, e, n = transform_bounds(src_crs, "EPSG:4326", b.left, b.bottom, b.right, b.top, densify_pts=21)
    except Exception as exc:  # PROJ errors
        raise InvalidParameter(f"the raster's extent cannot be transformed from {_label(src_crs)} ({exc})") from exc
    if not all(map(_finite, (w, s, e, n))) or not (-180 <= w < e <= 180 and -85.06 <= s < n <= 85.06):
        raise InvalidParameter(
            f"the raster's extent {tuple(round(v, 3) for v in (b.left, b.bottom, b.right, b.top))} is not a place on "
            f"Earth in {_label(src_crs)}: is the CRS right? (give it with --crs)")
    return (round(w, 7), round(s, 7), round(e, 7), round(n, 7))


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


__all__ = ["RasterReport", "load_raster", "KINDS"]
