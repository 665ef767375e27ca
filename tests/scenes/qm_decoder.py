"""A small quantized-mesh 1.0 decoder written from the spec (github.com/CesiumGS/quantized-mesh),
independent of the encoder under test: what CesiumJS does with the bytes."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

A, B = 6378137.0, 6356752.3142451793


@dataclass
class Decoded:
    center: tuple[float, float, float]
    min_height: float
    max_height: float
    sphere_center: tuple[float, float, float]
    sphere_radius: float
    occlusion_point: tuple[float, float, float]
    u: np.ndarray
    v: np.ndarray
    h: np.ndarray  # quantized 0..32767
    triangles: np.ndarray  # (n, 3)
    west: np.ndarray
    south: np.ndarray
    east: np.ndarray
    north: np.ndarray
    extensions: dict[int, bytes] = field(default_factory=dict)

    @property
    def heights(self) -> np.ndarray:
        """Metres, as Cesium reads them: min + (max - min) × h / 32767."""
        return self.min_height + (self.max_height - self.min_height) * self.h / 32767.0

    def lonlat(self, bounds: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        w, s, e, n = bounds
        return w + (e - w) * self.u / 32767.0, s + (n - s) * self.v / 32767.0

    def normals(self) -> np.ndarray:
        """The octvertexnormals extension decoded to unit vectors (n, 3)."""
        raw = np.frombuffer(self.extensions[1], dtype=np.uint8).reshape(-1, 2).astype(np.float64)
        x, y = raw[:, 0] / 255.0 * 2 - 1, raw[:, 1] / 255.0 * 2 - 1
        z = 1 - np.abs(x) - np.abs(y)
        neg = z < 0
        sx, sy = np.where(x >= 0, 1.0, -1.0), np.where(y >= 0, 1.0, -1.0)
        x2, y2 = x.copy(), y.copy()
        x2[neg], y2[neg] = (1 - np.abs(y[neg])) * sx[neg], (1 - np.abs(x[neg])) * sy[neg]
        out = np.column_stack([x2, y2, z])
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _zigzag_decode(codes: np.ndarray) -> np.ndarray:
    c = codes.astype(np.int64)
    return np.cumsum((c >> 1) ^ -(c & 1))


def decode(data: bytes) -> Decoded:
    head = struct.unpack_from("<3d2f4d3d", data, 0)
    off = 88
    (n,) = struct.unpack_from("<I", data, off)
    off += 4
    arrays = []
    for _ in range(3):
        arrays.append(_zigzag_decode(np.frombuffer(data, "<u2", n, off)))
        off += 2 * n
    wide = n > 65536
    size = 4 if wide else 2
    if off % size:
        off += size - off % size
    (tcount,) = struct.unpack_from("<I", data, off)
    off += 4
    codes = np.frombuffer(data, "<u4" if wide else "<u2", tcount * 3, off).astype(np.int64)
    off += size * tcount * 3
    indices, highest = [], 0
    for code in codes.tolist():
        indices.append(highest - code)
        if code == 0:
            highest += 1
    edges = []
    for _ in range(4):
        (count,) = struct.unpack_from("<I", data, off)
        off += 4
        edges.append(np.frombuffer(data, "<u4" if wide else "<u2", count, off).astype(np.int64))
        off += size * count
    extensions = {}
    while off < len(data):
        ext_id, length = struct.unpack_from("<BI", data, off)
        off += 5
        extensions[ext_id] = data[off:off + length]
        assert len(extensions[ext_id]) == length, "extension runs past the end"
        off += length
    return Decoded(head[0:3], head[3], head[4], head[5:8], head[8], head[9:12], arrays[0], arrays[1], arrays[2],
                   np.array(indices, dtype=np.int64).reshape(-1, 3), *edges, extensions=extensions)


def ecef(lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> np.ndarray:
    lam, phi = np.radians(lon), np.radians(lat)
    e2 = 1 - (B / A) ** 2
    nn = A / np.sqrt(1 - e2 * np.sin(phi) ** 2)
    return np.column_stack([(nn + h) * np.cos(phi) * np.cos(lam), (nn + h) * np.cos(phi) * np.sin(lam),
                            (nn * (1 - e2) + h) * np.sin(phi)])


def scaled_point_visible(point: np.ndarray, camera: np.ndarray) -> bool:
    """CesiumJS ``EllipsoidalOccluder.isScaledSpacePointVisible`` (both in ellipsoid-scaled space)."""
    vh2 = float(camera @ camera) - 1.0
    vt = point - camera
    vt_dot_vc = -float(vt @ camera)
    if vh2 < 0:
        occluded = vt_dot_vc > 0
    else:
        occluded = vt_dot_vc > vh2 and vt_dot_vc * vt_dot_vc / float(vt @ vt) > vh2
    return not occluded
