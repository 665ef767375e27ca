"""The quantized-mesh 1.0 terrain format (CesiumJS's terrain tiles), encoded with numpy.

Spec: https://github.com/CesiumGS/quantized-mesh . A tile is, little-endian:

- an 88-byte header: centre (ECEF, m), minimum and maximum height (m above the WGS84
  ellipsoid), bounding sphere (ECEF centre, radius) and the horizon occlusion point
  (in the ellipsoid-scaled ECEF frame, which is what Cesium's horizon culling uses);
- the vertices: ``u``, ``v``, ``height`` as uint16 (0..32767 across the tile, west→east,
  south→north, minimum→maximum height), each zig-zag delta-encoded;
- the triangles as "high-water-mark" encoded indices (16-bit, or 32-bit with padding to
  a 4-byte boundary when there are more than 65,536 vertices);
- the vertices on the west, south, east and north edges (Cesium hangs its skirts there);
- extensions, each ``uint8 id, uint32 length, bytes``: here only ``octvertexnormals``
  (id 1), one oct-encoded unit normal (2 bytes) per vertex, for lighting.

Nothing here knows tiling or rasters: :func:`encode_tile` takes a mesh in tile
coordinates and the tile's geographic bounds and returns the bytes (before gzip).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

#: Quantized coordinates run 0..QMAX across the tile (and from min to max height).
QMAX = 32767
#: WGS84 semi-major and semi-minor axes, metres.
WGS84_A = 6378137.0
WGS84_B = 6356752.3142451793
EXT_OCT_VERTEX_NORMALS = 1
HEADER = struct.Struct("<3d2f4d3d")


@dataclass(frozen=True)
class TileMesh:
    """A triangle mesh over one tile, in the tile's own coordinates.

    ``u``/``v`` are 0..32767 from the tile's west/south edge to its east/north edge;
    ``heights`` are metres above the ellipsoid; ``triangles`` index the vertices,
    three per row. Winding is fixed by the encoder (counter-clockwise seen from above).
    """

    u: np.ndarray
    v: np.ndarray
    heights: np.ndarray
    triangles: np.ndarray


def geodetic_to_ecef(lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> np.ndarray:
    """WGS84 longitude, latitude (degrees) and ellipsoidal height (m) → ECEF metres, shape (n, 3)."""
    lam, phi = np.radians(lon), np.radians(lat)
    e2 = 1.0 - (WGS84_B / WGS84_A) ** 2
    n = WGS84_A / np.sqrt(1.0 - e2 * np.sin(phi) ** 2)
    cos_phi = np.cos(phi)
    return np.column_stack([
        (n + h) * cos_phi * np.cos(lam),
        (n + h) * cos_phi * np.sin(lam),
        (n * (1.0 - e2) + h) * np.sin(phi),
    ])


def zigzag_delta_encode(values: np.ndarray) -> np.ndarray:
    """0..32767 values → uint16 zig-zag codes of the differences to the previous value."""
    d: np.ndarray = np.diff(np.asarray(values, dtype=np.int32), prepend=0).astype(np.int32)
    return ((d << 1) ^ (d >> 31)).astype(np.uint16)


def high_water_mark_encode(indices: np.ndarray) -> np.ndarray:
    """Indices in order of first use (each new index is the next integer) → high-water-mark codes."""
    idx = np.asarray(indices, dtype=np.int64)
    is_new = np.zeros(idx.size, dtype=bool)
    if idx.size:
        _, first = np.unique(idx, return_index=True)
        is_new[first] = True
    # the high-water mark before each index is the number of distinct indices seen so far
    highest = np.cumsum(is_new) - is_new
    return highest - idx


def oct_encode(normals: np.ndarray) -> np.ndarray:
    """Unit vectors (n, 3) → 2 bytes each, Cesium's ``AttributeCompression.octEncode`` (range 255)."""
    n = np.asarray(normals, dtype=np.float64)
    p = n / np.abs(n).sum(axis=1, keepdims=True)
    x, y = p[:, 0].copy(), p[:, 1].copy()
    below = p[:, 2] < 0
    sx, sy = np.where(x >= 0, 1.0, -1.0), np.where(y >= 0, 1.0, -1.0)
    x[below], y[below] = ((1 - np.abs(p[below, 1])) * sx[below], (1 - np.abs(p[below, 0])) * sy[below])
    return np.round((np.clip(np.column_stack([x, y]), -1, 1) * 0.5 + 0.5) * 255).astype(np.uint8)


def vertex_normals(u: np.ndarray, v: np.ndarray, heights: np.ndarray, triangles: np.ndarray,
                   bounds: tuple[float, float, float, float]) -> np.ndarray:
    """Unit vertex normals (ECEF) for lighting: the terrain's slope on the ellipsoid's up.

    Slopes come from the triangles in the tile's local metric plane (east, north, up),
    area-weighted per vertex, then each vertex's local normal is turned into ECEF at its
    own longitude and latitude. Working in the tangent plane rather than on ECEF chords
    keeps the normals right for the huge, coarse tiles of the first levels too.
    """
    west, south, east, north = bounds
    mid = np.radians((south + north) / 2)
    x = u * (np.radians(east - west) * WGS84_A * np.cos(mid) / QMAX)
    y = v * (np.radians(north - south) * WGS84_A / QMAX)
    p = np.column_stack([x, y, heights])
    p0, p1, p2 = (p[triangles[:, k]] for k in range(3))
    face = np.cross(p1 - p0, p2 - p0)  # up-pointing for counter-clockwise triangles; length = 2 × area
    local = np.zeros_like(p)
    for k in range(3):
        np.add.at(local, triangles[:, k], face)
    length = np.linalg.norm(local, axis=1, keepdims=True)
    local = np.where(length > 0, local / np.where(length > 0, length, 1), np.array([0.0, 0.0, 1.0]))
    lam = np.radians(west + (east - west) * u / QMAX)
    phi = np.radians(south + (north - south) * v / QMAX)
    sl, cl, sp, cp = np.sin(lam), np.cos(lam), np.sin(phi), np.cos(phi)
    e_axis = np.column_stack([-sl, cl, np.zeros_like(sl)])
    n_axis = np.column_stack([-sp * cl, -sp * sl, cp])
    # the geodetic up is the ellipsoid's surface normal at (lon, lat)
    up_axis = np.column_stack([cp * cl, cp * sl, sp])
    out = local[:, :1] * e_axis + local[:, 1:2] * n_axis + local[:, 2:] * up_axis
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def horizon_occlusion_point(positions: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Cesium's ``EllipsoidalOccluder.computeHorizonCullingPointFromPoints``, in scaled space.

    A point along ``direction`` far enough out that if it is below the horizon, every
    position is. Tiles too wide for such a point (a hemisphere at level 0) get one so far
    out that it is always visible: they are simply never horizon-culled.
    """
    scale = np.array([1 / WGS84_A, 1 / WGS84_A, 1 / WGS84_B])
    d = direction * scale
    d = d / np.linalg.norm(d)
    q = positions * scale
    mag2 = np.maximum(1.0, (q * q).sum(axis=1))
    mag = np.sqrt(mag2)
    unit = q / np.linalg.norm(q, axis=1, keepdims=True)
    cos_a = unit @ d
    sin_a = np.linalg.norm(np.cross(unit, d), axis=1)
    cos_b = 1.0 / mag
    sin_b = np.sqrt(mag2 - 1.0) * cos_b
    denom = cos_a * cos_b - sin_a * sin_b
    if np.any(denom <= 1e-9):
        return d * 1e9
    return d * float((1.0 / denom).max())


def _wound_counter_clockwise(u: np.ndarray, v: np.ndarray, tri: np.ndarray) -> np.ndarray:
    a, b, c = (tri[:, k] for k in range(3))
    cross = (u[b] - u[a]) * (v[c] - v[a]) - (v[b] - v[a]) * (u[c] - u[a])
    out = tri.copy()
    flip = cross < 0
    out[flip, 1], out[flip, 2] = tri[flip, 2], tri[flip, 1]
    return out[cross != 0]  # degenerate triangles carry nothing


def _float32_bounds(lo: float, hi: float) -> tuple[float, float]:
    """``lo``/``hi`` as float32 values that still enclose them (the header's type)."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    if lo32 > lo:
        lo32 = np.nextafter(lo32, np.float32(-np.inf))
    if hi32 < hi:
        hi32 = np.nextafter(hi32, np.float32(np.inf))
    return float(lo32), float(hi32)


def encode_tile(mesh: TileMesh, bounds: tuple[float, float, float, float], *, normals: bool = False) -> bytes:
    """The quantized-mesh 1.0 bytes (uncompressed) of ``mesh`` over ``bounds`` = (west, south, east, north)°.

    Vertices are renumbered in order of first use by the triangles (as high-water-mark
    encoding needs); vertices no triangle uses are dropped.
    """
    u = np.asarray(mesh.u, dtype=np.int64)
    v = np.asarray(mesh.v, dtype=np.int64)
    h = np.asarray(mesh.heights, dtype=np.float64)
    if u.min(initial=0) < 0 or max(u.max(initial=0), v.max(initial=0)) > QMAX or v.min(initial=0) < 0:
        raise ValueError("u and v must lie within 0..32767")
    tri = _wound_counter_clockwise(u, v, np.asarray(mesh.triangles, dtype=np.int64).reshape(-1, 3))
    if not len(tri):
        raise ValueError("a tile needs at least one triangle of non-zero area")
    # renumber by first use
    flat = tri.ravel()
    used, first = np.unique(flat, return_index=True)
    order = used[np.argsort(first)]
    new_id = np.empty(int(u.size), dtype=np.int64)
    new_id[order] = np.arange(order.size)
    u, v, h, tri = u[order], v[order], h[order], new_id[tri]
    n = order.size

    lo, hi = _float32_bounds(float(h.min()), float(h.max()))  # as the header stores them
    hq = np.zeros(n, dtype=np.int64) if hi == lo else np.clip(np.round((h - lo) / (hi - lo) * QMAX), 0, QMAX).astype(np.int64)
    west, south, east, north = bounds
    lon = west + (east - west) * u / QMAX
    lat = south + (north - south) * v / QMAX
    ecef = geodetic_to_ecef(lon, lat, lo + (hi - lo) * hq / QMAX if hi > lo else h)
    box_lo, box_hi = ecef.min(axis=0), ecef.max(axis=0)
    centre = (box_lo + box_hi) / 2
    radius = float(np.linalg.norm(ecef - centre, axis=1).max())
    occlusion = horizon_occlusion_point(ecef, centre)

    parts = [HEADER.pack(*centre, lo, hi, *centre, radius, *occlusion)]
    parts.append(struct.pack("<I", n))
    parts += [zigzag_delta_encode(a).tobytes() for a in (u, v, hq)]
    wide = n > 65536
    itype = np.uint32 if wide else np.uint16
    size = sum(len(p) for p in parts)
    if wide and size % 4:
        parts.append(b"\0" * (4 - size % 4))
    parts.append(struct.pack("<I", len(tri)))
    parts.append(high_water_mark_encode(tri.ravel()).astype(itype).tobytes())
    for on_edge, along in ((u == 0, v), (v == 0, u), (u == QMAX, v), (v == QMAX, u)):  # west, south, east, north
        ids = np.flatnonzero(on_edge)
        ids = ids[np.argsort(along[ids], kind="stable")]
        parts.append(struct.pack("<I", ids.size))
        parts.append(ids.astype(itype).tobytes())
    if normals:
        data = oct_encode(vertex_normals(u, v, h, tri, bounds)).tobytes()
        parts.append(struct.pack("<BI", EXT_OCT_VERTEX_NORMALS, len(data)))
        parts.append(data)
    return b"".join(parts)
