"""Coordinate reference systems: what twin accepts and serves, and the transforms.

Stored geometry is EPSG:4326 in longitude/latitude order (OGC CRS84). CGCS2000
(EPSG:4490) is treated as equal to it at map scale. Output and ``bbox-crs`` follow
the CRS's own axis order, as OGC API Features Part 2 requires (EPSG:4326 and
4490 are latitude first; Gauss–Krüger zones are northing first).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from twin.errors import InvalidParameter

CRS84_URI = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{code}"

#: CRSs listed by /collections and accepted by ``crs``/``bbox-crs``: CRS84, WGS84,
#: CGCS2000, Web Mercator and the CGCS2000 3° Gauss–Krüger zones (with and
#: without the zone prefix in the easting) that cover eastern China.
SUPPORTED_EPSG = (4326, 4490, 3857, *range(4513, 4555))
SUPPORTED_CRS = [CRS84_URI] + [EPSG_URI.format(code=c) for c in SUPPORTED_EPSG]


@lru_cache(maxsize=64)
def parse_crs(value: str) -> CRS:
    """A CRS from an OGC URI, ``EPSG:n``, a bare EPSG code or ``CRS84``.

    Raises :class:`InvalidParameter` for anything pyproj cannot resolve.
    """
    v = value.strip().strip("[]<>")
    if v.upper() in ("CRS84", "OGC:CRS84", CRS84_URI.upper()):
        return CRS.from_user_input("OGC:CRS84")
    if v.startswith("http://www.opengis.net/def/crs/EPSG/0/"):
        v = "EPSG:" + v.rsplit("/", 1)[1]
    elif v.isdigit():
        v = "EPSG:" + v
    try:
        return CRS.from_user_input(v)
    except CRSError as exc:
        raise InvalidParameter(f"unknown CRS {value!r}", detail={"supported": SUPPORTED_CRS}) from exc


def crs_uri(crs: CRS) -> str:
    """The OGC URI of ``crs`` (CRS84 for lon/lat WGS84)."""
    if crs.to_string() == "OGC:CRS84":
        return CRS84_URI
    code = crs.to_epsg()
    return EPSG_URI.format(code=code) if code else crs.to_string()


def is_crs84(crs: CRS) -> bool:
    return crs.to_string() == "OGC:CRS84"


def check_supported(crs: CRS) -> None:
    if not is_crs84(crs) and crs.to_epsg() not in SUPPORTED_EPSG:
        raise InvalidParameter(
            f"CRS {crs_uri(crs)} is not offered by this server", detail={"supported": SUPPORTED_CRS}
        )


@lru_cache(maxsize=64)
def _transformer(src: str, dst: str, always_xy: bool) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=always_xy)


def bbox_to_crs84(bbox: tuple[float, float, float, float], crs: CRS) -> tuple[float, float, float, float]:
    """Turn a bbox given in ``crs`` (in that CRS's axis order) into a CRS84 lon/lat bbox."""
    if is_crs84(crs):
        return bbox
    t = _transformer(crs.srs, "OGC:CRS84", False)
    try:
        out = t.transform_bounds(*bbox, densify_pts=21)
    except Exception as exc:  # pyproj raises ProjError for impossible inputs
        raise InvalidParameter(f"bbox cannot be transformed from {crs_uri(crs)}", detail=str(exc)) from exc
    if not np.all(np.isfinite(out)):
        raise InvalidParameter(f"bbox lies outside the area of use of {crs_uri(crs)}")
    return tuple(float(x) for x in out)  # type: ignore[return-value]


def geometries_from_crs84(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """Reproject an array of CRS84 shapely geometries into ``crs`` (its own axis order)."""
    if is_crs84(crs) or len(geoms) == 0:
        return geoms
    t = _transformer("OGC:CRS84", crs.srs, False)
    return shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


def geometries_to_wgs84(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """Reproject source geometries (x = easting/longitude as files store them) to lon/lat."""
    if is_crs84(crs) or crs.to_epsg() in (4326, 4490):
        return geoms
    t = _transformer(crs.srs, "OGC:CRS84", True)
    return shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
