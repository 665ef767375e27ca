"""Vectorised mesh builders: extruded footprints, tubes, vertical cylinders, terrain grids.

Every builder takes whole arrays of features and returns one :class:`MeshPart` with
shared vertex arrays (no per-feature Python objects except the roof triangulation,
which is one ``earcut`` call per polygon). Positions are local ENU metres
(:class:`scenes.frame.LocalFrame`), converted exactly from lon/lat/height, so walls
stay vertical on the curved Earth. ``feature`` is, per vertex, the row of the
feature in its layer's property table (``_FEATURE_ID_0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mapbox_earcut
import numpy as np
import shapely

from scenes.frame import LocalFrame


@dataclass
class MeshPart:
    positions: np.ndarray  # (N, 3) float64 ENU metres
    normals: np.ndarray  # (N, 3) float32 unit, ENU
    indices: np.ndarray  # (M,) uint32, triangles counter-clockwise seen from outside
    feature: np.ndarray  # (N,) int64 property-table row
    colors: np.ndarray | None = None  # (N, 4) uint8 RGBA
    uvs: np.ndarray | None = None  # (N, 2) float32
    outline: np.ndarray | None = None  # (2K,) uint32 vertex pairs: edges to draw (CESIUM_primitive_outline)

    @property
    def triangles(self) -> int:
        return len(self.indices) // 3

    @staticmethod
    def empty() -> MeshPart:
        return MeshPart(np.zeros((0, 3)), np.zeros((0, 3), np.float32), np.zeros(0, np.uint32),
                        np.zeros(0, np.int64))


def merge(parts: Sequence[MeshPart]) -> MeshPart:
    """One part from several (indices offset); colours/uvs kept only if every part has them."""
    parts = [p for p in parts if len(p.positions)]
    if not parts:
        return MeshPart.empty()
    offsets = np.cumsum([0] + [len(p.positions) for p in parts[:-1]])
    colors = np.concatenate([p.colors for p in parts]) if all(p.colors is not None for p in parts) else None
    uvs = np.concatenate([p.uvs for p in parts]) if all(p.uvs is not None for p in parts) else None
    outlines = [p.outline + np.uint32(o) for p, o in zip(parts, offsets, strict=True) if p.outline is not None]
    return MeshPart(
        np.concatenate([p.positions for p in parts]),
        np.concatenate([p.normals for p in parts]),
        np.concatenate([p.indices + np.uint32(o) for p, o in zip(parts, offsets, strict=True)]).astype(np.uint32),
        np.concatenate([p.feature for p in parts]),
        colors, uvs,
        np.concatenate(outlines).astype(np.uint32) if outlines else None,
    )


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def orient_outward(positions: np.ndarray, normals: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Flip triangles whose winding disagrees with their vertices' normals (glTF front = CCW)."""
    t = tris.reshape(-1, 3)
    a, b, c = positions[t[:, 0]], positions[t[:, 1]], positions[t[:, 2]]
    face = np.cross(b - a, c - a)
    want = normals[t[:, 0]] + normals[t[:, 1]] + normals[t[:, 2]]
    flip = np.einsum("ij,ij->i", face, want) < 0
    t = t.copy()
    t[flip, 1], t[flip, 2] = t[flip, 2], t[flip, 1].copy()
    return t.ravel().astype(np.uint32)


def extrude_footprints(frame: LocalFrame, geoms: np.ndarray, base: np.ndarray, top: np.ndarray,
                       rows: np.ndarray) -> MeshPart:
    """Prisms from (Multi)Polygons in lon/lat: walls from ``base`` to ``top`` heights (m) and a flat roof.

    ``base``/``top``/``rows`` are per geometry. No floor: a building is seen from
    above and the side. Holes (courtyards) get their inner walls.
    """
    if len(geoms) == 0:
        return MeshPart.empty()
    parts, part_of = shapely.get_parts(np.asarray(geoms, dtype=object), return_index=True)
    parts = shapely.orient_polygons(parts)  # exterior CCW, holes CW: walls face outward
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    # drop each ring's closing vertex
    last = np.r_[coord_ring[1:] != coord_ring[:-1], True]
    coords, coord_ring = coords[~last], coord_ring[~last]
    n = len(coords)
    ring_start = np.searchsorted(coord_ring, np.arange(len(rings)))
    ring_len = np.bincount(coord_ring, minlength=len(rings))
    nxt = np.arange(n) + 1
    ends = ring_start + ring_len - 1
    nxt[ends[ring_len > 0]] = ring_start[ring_len > 0]
    feat_of_coord = part_of[ring_part[coord_ring]]
    hb = np.asarray(base, float)[feat_of_coord]
    ht = np.asarray(top, float)[feat_of_coord]
    lon, lat = coords[:, 0], coords[:, 1]
    bottom = frame.to_enu(lon, lat, hb)
    upper = frame.to_enu(lon, lat, ht)
    # walls: one quad per edge, 4 own vertices so normals stay flat
    wpos = np.stack([bottom, bottom[nxt], upper[nxt], upper], axis=1).reshape(-1, 3)
    edge = bottom[nxt] - bottom
    up = upper - bottom
    wn = _unit(np.cross(edge, _unit(up))).astype(np.float32)
    wnorm = np.repeat(wn, 4, axis=0)
    q = np.arange(n, dtype=np.uint32) * 4
    wtri = np.stack([q, q + 1, q + 2, q, q + 2, q + 3], axis=1).ravel()
    wfeat = np.repeat(np.asarray(rows)[feat_of_coord], 4)
    # roofs: earcut per polygon part, over the ring vertices of the top
    roof_tris = []
    part_first_ring = np.searchsorted(ring_part, np.arange(len(parts)))
    part_nrings = np.bincount(ring_part, minlength=len(parts))
    for p in range(len(parts)):
        r0, nr = part_first_ring[p], part_nrings[p]
        if nr == 0:
            continue
        s = ring_start[r0]
        e = ring_start[r0 + nr - 1] + ring_len[r0 + nr - 1]
        if e - s < 3:
            continue
        ring_ends = (ring_start[r0:r0 + nr] + ring_len[r0:r0 + nr] - s).astype(np.uint32)
        tri = mapbox_earcut.triangulate_float64(upper[s:e, :2], ring_ends)
        roof_tris.append(tri.astype(np.uint32) + np.uint32(s))
    rtri = np.concatenate(roof_tris) if roof_tris else np.zeros(0, np.uint32)
    rnorm = _unit(upper - frame.to_enu(lon, lat, ht - 1.0)).astype(np.float32)
    rtri = orient_outward(upper, rnorm, rtri)
    wtri = orient_outward(wpos, wnorm, wtri)
    positions = np.concatenate([wpos, upper])
    # outline: bottom, top and one vertical edge per wall quad (the next quad draws the other vertical)
    outline = np.stack([q, q + 1, q + 3, q + 2, q, q + 3], axis=1).ravel().astype(np.uint32)
    return MeshPart(
        positions,
        np.concatenate([wnorm, rnorm]),
        np.concatenate([wtri, rtri + np.uint32(len(wpos))]).astype(np.uint32),
        np.concatenate([wfeat, np.asarray(rows)[feat_of_coord]]).astype(np.int64),
        outline=outline,
    )


def _ring_offsets(direction: np.ndarray, sides: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit offsets (S, sides, 3) perpendicular to each direction, and the angles."""
    d = _unit(direction)
    ref = np.tile([0.0, 0.0, 1.0], (len(d), 1))
    vertical = np.abs(d[:, 2]) > 0.99
    ref[vertical] = [1.0, 0.0, 0.0]
    u = _unit(np.cross(d, ref))
    v = np.cross(d, u)
    ang = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    off = np.cos(ang)[None, :, None] * u[:, None, :] + np.sin(ang)[None, :, None] * v[:, None, :]
    return off, ang


def tubes(axis: np.ndarray, seg_line: np.ndarray, radius: np.ndarray, rows: np.ndarray,
          colors: np.ndarray, sides: int = 8) -> MeshPart:
    """Tubes along polylines. ``axis`` (P, 3) ENU axis points, ``seg_line`` (P,) the line of each point
    (points of one line contiguous); ``radius``/``rows``/``colors`` per line."""
    same = seg_line[1:] == seg_line[:-1]
    a_idx = np.flatnonzero(same)
    a_idx = a_idx[np.linalg.norm(axis[a_idx + 1] - axis[a_idx], axis=1) > 1e-6]  # repeated vertices
    if len(a_idx) == 0:
        return MeshPart.empty()
    a, b = axis[a_idx], axis[a_idx + 1]
    line = seg_line[a_idx]
    r = np.asarray(radius, float)[line]
    off, _ = _ring_offsets(b - a, sides)
    ring_a = a[:, None, :] + r[:, None, None] * off
    ring_b = b[:, None, :] + r[:, None, None] * off
    s = len(a)
    pos = np.concatenate([ring_a, ring_b], axis=1).reshape(-1, 3)
    nrm = np.concatenate([off, off], axis=1).reshape(-1, 3).astype(np.float32)
    k = np.arange(sides)
    k1 = (k + 1) % sides
    base = (np.arange(s) * 2 * sides)[:, None]
    tri = np.stack([base + k, base + k1, base + sides + k1, base + k, base + sides + k1, base + sides + k],
                   axis=2).reshape(-1).astype(np.uint32)
    tri = orient_outward(pos, nrm, tri)
    feat = np.repeat(np.asarray(rows)[line], 2 * sides)
    col = np.repeat(np.asarray(colors, np.uint8)[line], 2 * sides, axis=0)
    return MeshPart(pos, nrm, tri, feat.astype(np.int64), col)


def cylinders(bottom: np.ndarray, top: np.ndarray, radius: np.ndarray, rows: np.ndarray,
              colors: np.ndarray, sides: int = 12) -> MeshPart:
    """Closed-top vertical cylinders from ``bottom`` to ``top`` (both (K, 3) ENU points)."""
    k = len(bottom)
    if k == 0:
        return MeshPart.empty()
    off, _ = _ring_offsets(top - bottom, sides)
    r = np.asarray(radius, float)[:, None, None]
    side_b = bottom[:, None, :] + r * off
    side_t = top[:, None, :] + r * off
    axis_n = _unit(top - bottom)
    cap = np.concatenate([top[:, None, :], side_t], axis=1)  # centre + rim, own vertices (flat normal)
    pos = np.concatenate([side_b, side_t, cap], axis=1).reshape(-1, 3)
    per = 3 * sides + 1
    nrm = np.concatenate([off, off, np.repeat(axis_n[:, None, :], sides + 1, axis=1)], axis=1)
    nrm = nrm.reshape(-1, 3).astype(np.float32)
    j = np.arange(sides)
    j1 = (j + 1) % sides
    base = (np.arange(k) * per)[:, None]
    walls = np.stack([base + j, base + j1, base + sides + j1, base + j, base + sides + j1, base + sides + j], axis=2)
    c0 = base + 2 * sides
    caps = np.stack([np.broadcast_to(c0, (k, sides)), c0 + 1 + j, c0 + 1 + j1], axis=2)
    tri = np.concatenate([walls.reshape(k, -1), caps.reshape(k, -1)], axis=1).ravel().astype(np.uint32)
    tri = orient_outward(pos, nrm, tri)
    feat = np.repeat(np.asarray(rows), per)
    col = np.repeat(np.asarray(colors, np.uint8), per, axis=0)
    return MeshPart(pos, nrm, tri, feat.astype(np.int64), col)


def grid_surface(enu: np.ndarray, valid: np.ndarray, uvs: np.ndarray | None) -> MeshPart:
    """A height-field surface from an (R, C, 3) ENU grid; cells touching invalid points are left out."""
    rows, cols = valid.shape
    if rows < 2 or cols < 2:
        return MeshPart.empty()
    idx = np.arange(rows * cols).reshape(rows, cols)
    a, b = idx[:-1, :-1], idx[:-1, 1:]
    c, d = idx[1:, :-1], idx[1:, 1:]
    ok = valid[:-1, :-1] & valid[:-1, 1:] & valid[1:, :-1] & valid[1:, 1:]
    tri = np.stack([a, c, b, b, c, d], axis=-1)[ok].reshape(-1, 3)
    pos = enu.reshape(-1, 3)
    if len(tri) == 0:
        return MeshPart.empty()
    face = np.cross(pos[tri[:, 1]] - pos[tri[:, 0]], pos[tri[:, 2]] - pos[tri[:, 0]])
    face[face[:, 2] < 0] *= -1  # a height field faces up
    nrm = np.zeros_like(pos)
    for k in range(3):
        np.add.at(nrm, tri[:, k], face)
    nrm = _unit(nrm)
    nrm[np.linalg.norm(nrm, axis=1) == 0] = [0.0, 0.0, 1.0]
    nrm = nrm.astype(np.float32)
    tri_u = orient_outward(pos, nrm, tri.ravel().astype(np.uint32))
    # keep only used vertices
    used = np.unique(tri_u)
    remap = np.full(len(pos), -1, np.int64)
    remap[used] = np.arange(len(used))
    return MeshPart(pos[used], nrm[used], remap[tri_u].astype(np.uint32), np.zeros(len(used), np.int64),
                    None, None if uvs is None else uvs.reshape(-1, 2)[used].astype(np.float32))
