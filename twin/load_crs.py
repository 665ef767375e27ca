"""Source CRS on import: which CRS a file is in, whether its coordinates fit it, the transform.

Stored geometry is EPSG:4326 lon/lat. CGCS2000 (EPSG:4490) is taken as equal to
it; CGCS2000 Gauss–Krüger zones (EPSG:4513–4554: 3° zones with the zone number
prefixed to the easting, 4513–4533 for zones 25–45, and without it, 4534–4554 for
central meridians 75°E–135°E) and any other CRS are transformed with pyproj.

A file whose numbers cannot be in the CRS it declares (projected metres
declared as lon/lat, a zone-40 easting declared as zone 39, …) is refused, and
the message says which CRS the numbers look like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import CRS

from twin.crs import geometries_to_wgs84, parse_crs
from twin.errors import InvalidParameter, LoadFailed

#: Extra room (degrees) around a CRS's published area of use before a coordinate is implausible.
GEOGRAPHIC_MARGIN = 1.0
PROJECTED_MARGIN = 2.0


@dataclass(frozen=True)
class SourceCRS:
    crs: CRS
    label: str  # e.g. "EPSG:4528"
    origin: str  # "argument" | "file" | "assumed"


def resolve_source_crs(declared: str | None, override: str | None, fmt: str) -> SourceCRS:
    """``override`` (the ``crs=`` argument) wins over the file's own; lon/lat WGS84 if neither."""
    if override:
        crs = parse_crs(override)
        return SourceCRS(crs, _label(crs), "argument")
    if declared:
        try:
            crs = CRS.from_user_input(declared)
        except Exception as exc:  # pyproj CRSError: a .prj GDAL could not make sense of
            raise InvalidParameter(
                f"the file's CRS is not understood ({str(declared)[:80]}…); give it with crs= (--crs EPSG:n)"
            ) from exc
        return SourceCRS(crs, _label(crs), "file")
    return SourceCRS(CRS.from_epsg(4326), "EPSG:4326", "assumed")


def _label(crs: CRS) -> str:
    code = crs.to_epsg(min_confidence=70)
    if crs.to_string() == "OGC:CRS84":
        return "OGC:CRS84"
    return f"EPSG:{code}" if code else crs.name


def zone_prefixed_gk(epsg: int | None) -> int | None:
    """Zone number of a CGCS2000 3° Gauss–Krüger CRS with zone prefix (EPSG:4513–4533), else None."""
    return epsg - 4513 + 25 if epsg is not None and 4513 <= epsg <= 4533 else None


def guess_crs(bounds: tuple[float, float, float, float], declared: CRS | None = None) -> str:
    """Describe the CRS raw coordinates (x = easting) look like, for error messages."""
    xmin, ymin, xmax, ymax = bounds
    if -180 <= xmin and xmax <= 180 and -90 <= ymin and ymax <= 90:
        return "longitude/latitude degrees (EPSG:4326 or CGCS2000 EPSG:4490)"
    if -90 <= xmin and xmax <= 90 and -180 <= ymin and ymax <= 180:
        return "latitude/longitude with the axes swapped (x should be the longitude)"
    if 0 <= ymin and ymax <= 10_000_000:
        zone = int(xmin // 1_000_000)
        if zone == int(xmax // 1_000_000) and 25 <= zone <= 45:
            return (f"CGCS2000 3° Gauss–Krüger zone {zone} with zone prefix, central meridian {3 * zone}°E "
                    f"(EPSG:{4513 + zone - 25})")
        if zone == int(xmax // 1_000_000) and 13 <= zone <= 23:
            return (f"CGCS2000 6° Gauss–Krüger zone {zone} with zone prefix (EPSG:{4491 + zone - 13}) "
                    "or Web Mercator (EPSG:3857)")
        if 0 < xmin and xmax < 1_000_000:
            hint = ""
            zone_given = zone_prefixed_gk(declared.to_epsg() if declared else None)
            if zone_given:
                hint = f"; the same zone without prefix is EPSG:{4534 + zone_given - 25}"
            return ("projected metres without a zone prefix (a CGCS2000 3° Gauss–Krüger zone, "
                    f"EPSG:4534–4554, e.g. EPSG:4549 for 120°E, or UTM){hint}")
    if abs(xmin) <= 20_037_509 and abs(xmax) <= 20_037_509 and abs(ymin) <= 20_048_967 and abs(ymax) <= 20_048_967:
        return "projected metres, possibly Web Mercator (EPSG:3857)"
    return "no CRS twin recognises"


def area_of_use(crs: CRS) -> tuple[float, float, float, float]:
    a = crs.area_of_use
    margin = GEOGRAPHIC_MARGIN if crs.is_geographic else PROJECTED_MARGIN
    if a is None:
        return (-180.0, -90.0, 180.0, 90.0)
    return (max(a.west - margin, -180.0), max(a.south - margin, -90.0),
            min(a.east + margin, 180.0), min(a.north + margin, 90.0))


def to_wgs84_checked(geoms: np.ndarray, src: SourceCRS) -> tuple[np.ndarray, np.ndarray]:
    """Transform ``geoms`` (no ``None``) to lon/lat; returns (geometries, mask of implausible rows).

    Raises :class:`LoadFailed` naming the CRS the data look like when most rows
    are implausible, i.e. the CRS is wrong for the file as a whole.
    """
    n = len(geoms)
    if n == 0:
        return geoms, np.zeros(0, dtype=bool)
    raw = shapely.bounds(geoms)  # (n, 4) in source units
    if src.crs.is_geographic:
        bad = ~((raw[:, 0] >= -180) & (raw[:, 2] <= 180) & (raw[:, 1] >= -90) & (raw[:, 3] <= 90))
        out = geoms if bad.all() else geometries_to_wgs84(geoms, src.crs)
    else:
        out = geometries_to_wgs84(geoms, src.crs)
        bad = np.zeros(n, dtype=bool)
    lon = shapely.bounds(out)
    west, south, east, north = area_of_use(src.crs)
    finite = np.isfinite(lon).all(axis=1)
    inside = finite & (lon[:, 0] >= west) & (lon[:, 2] <= east) & (lon[:, 1] >= south) & (lon[:, 3] <= north)
    bad |= ~inside
    if bad.sum() * 2 > n:
        ok_raw = raw[np.isfinite(raw).all(axis=1)]
        med = tuple(float(v) for v in np.median(ok_raw, axis=0)) if len(ok_raw) else (np.nan,) * 4
        total = (float(np.nanmin(raw[:, 0])), float(np.nanmin(raw[:, 1])),
                 float(np.nanmax(raw[:, 2])), float(np.nanmax(raw[:, 3])))
        looks = guess_crs(med, src.crs)  # type: ignore[arg-type]
        raise LoadFailed(
            f"coordinates do not fit {src.label} ({src.origin} CRS): x {total[0]:,.6g}…{total[2]:,.6g}, "
            f"y {total[1]:,.6g}…{total[3]:,.6g} lie outside its area of use "
            f"({west:g}…{east:g}°E, {south:g}…{north:g}°N); they look like {looks}. "
            "Give the right CRS with crs= (--crs EPSG:n).",
            detail={"declared_crs": src.label, "crs_origin": src.origin, "bounds": total, "looks_like": looks,
                    "implausible_rows": int(bad.sum()), "rows": n},
            code="crs_mismatch",
        )
    return out, bad
