"""Hillshade of a DEM tile in Web Mercator, computed with numpy.

The tile is read with a one-pixel buffer on every side so the 3×3 (Horn) gradient at
the tile's edge uses the neighbouring tile's pixels: two adjacent tiles shade their
shared edge exactly as one larger tile would, so no seams show.

Web Mercator stretches distances by ``1/cos(lat)``; the ground size of a pixel is
therefore computed per row from its latitude (not once per tile), which keeps the
shading continuous between tile rows too.
"""

from __future__ import annotations

import numpy as np

#: WGS84 semi-major axis, the sphere radius of EPSG:3857 (metres).
EARTH_RADIUS_M = 6378137.0


def ground_pixel_size(y_merc: np.ndarray, res_merc: float) -> np.ndarray:
    """Ground size in metres of a Web Mercator pixel of ``res_merc`` metres at northings ``y_merc``.

    The Mercator scale factor is ``1/cos(lat) = cosh(y/R)``.
    """
    return res_merc / np.cosh(np.asarray(y_merc, dtype="float64") / EARTH_RADIUS_M)


def hillshade(
    elevation: np.ndarray,
    valid: np.ndarray,
    top_y_merc: float,
    res_merc: float,
    *,
    azimuth: float = 315.0,
    altitude: float = 45.0,
    z_factor: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Shade a buffered elevation window; returns ``(shade uint8, valid bool)`` one pixel smaller each side.

    ``elevation`` (rows × cols, metres) is a Web Mercator window whose first row's top
    edge lies at northing ``top_y_merc`` with square pixels of ``res_merc`` metres;
    ``valid`` marks pixels with data. ``azimuth`` is the compass direction the light
    comes from (degrees, 0 = north, 90 = east), ``altitude`` its angle above the
    horizon (degrees); ``z_factor`` exaggerates heights. Shade is 1..255 (0 where a
    pixel or one of its neighbours has no data), like ``gdaldem hillshade``.
    """
    z = np.asarray(elevation, dtype="float64")
    rows, cols = z.shape
    # northing of the centre of each interior row
    centres = top_y_merc - (np.arange(1, rows - 1) + 0.5) * res_merc
    ground = ground_pixel_size(centres, res_merc)[:, None]

    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    # Horn's gradient: rise per metre towards east and towards north
    dz_de = ((c + 2 * f + i) - (a + 2 * d + g)) / (8.0 * ground) * z_factor
    dz_dn = ((a + 2 * b + c) - (g + 2 * h + i)) / (8.0 * ground) * z_factor

    az = np.radians(azimuth)
    alt = np.radians(altitude)
    # unit normal (-dz_de, -dz_dn, 1)/n dotted with the unit vector towards the light
    shade = (
        np.sin(alt) - np.cos(alt) * (dz_de * np.sin(az) + dz_dn * np.cos(az))
    ) / np.sqrt(1.0 + dz_de**2 + dz_dn**2)

    ok = np.asarray(valid, dtype=bool)
    ok_inner = (
        ok[1:-1, 1:-1] & ok[:-2, :-2] & ok[:-2, 1:-1] & ok[:-2, 2:]
        & ok[1:-1, :-2] & ok[1:-1, 2:] & ok[2:, :-2] & ok[2:, 1:-1] & ok[2:, 2:]
    )
    out = (1.0 + 254.0 * np.clip(shade, 0.0, 1.0)).round().astype("uint8")
    out[~ok_inner] = 0
    return out, ok_inner
