"""The local east-north-up frame a scene or tileset is built in, and its place on the globe.

Every scene has one origin (lon, lat, h). Vertices are converted exactly
(lon/lat/h → ECEF → ENU, with pyproj), so buildings 5 km from the origin still stand
on the curved ground instead of a tangent plane. The frame's axes are metres east,
north and up; in the glTF they are stored **Y-up** as ``(east, up, -north)``, as glTF
requires. The 4×4 ``ecef_transform`` (column-major, as 3D Tiles and glTF store
matrices) places the Z-up ENU frame on the WGS84 ellipsoid; 3D Tiles clients apply
glTF's Y-up → Z-up rotation before it, so the tileset's root ``transform`` is exactly
this matrix.

Heights are the data's elevations (metres above the national datum), used as
ellipsoidal heights; the geoid separation (tens of metres in places) is not applied,
so terrain and buildings from twin agree with each other, not with a geoid model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyproj

_TO_ECEF = pyproj.Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
_FROM_ECEF = pyproj.Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)


@dataclass(frozen=True)
class LocalFrame:
    """ENU frame at ``lon``/``lat`` (degrees) and ``height`` (metres)."""

    lon: float
    lat: float
    height: float = 0.0
    _origin: np.ndarray = field(init=False, repr=False, compare=False)
    _rot: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        x, y, z = _TO_ECEF.transform(self.lon, self.lat, self.height)
        lam, phi = np.radians(self.lon), np.radians(self.lat)
        sl, cl, sp, cp = np.sin(lam), np.cos(lam), np.sin(phi), np.cos(phi)
        # rows: east, north, up unit vectors in ECEF
        rot = np.array([[-sl, cl, 0.0], [-sp * cl, -sp * sl, cp], [cp * cl, cp * sl, sp]])
        object.__setattr__(self, "_origin", np.array([x, y, z]))
        object.__setattr__(self, "_rot", rot)

    def to_enu(self, lon, lat, h) -> np.ndarray:  # noqa: ANN001 - array-likes
        """(N, 3) east/north/up metres of lon/lat (degrees) and height (metres)."""
        x, y, z = _TO_ECEF.transform(np.asarray(lon, float), np.asarray(lat, float), np.asarray(h, float))
        d = np.stack([np.ravel(x), np.ravel(y), np.ravel(z)], axis=1) - self._origin
        return d @ self._rot.T

    def to_lonlath(self, enu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inverse of :meth:`to_enu`: lon, lat (degrees) and height (metres) of (N, 3) ENU metres."""
        ecef = np.asarray(enu, float) @ self._rot + self._origin
        lon, lat, h = _FROM_ECEF.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
        return np.asarray(lon), np.asarray(lat), np.asarray(h)

    @property
    def ecef_transform(self) -> list[float]:
        """ENU (Z-up) → ECEF as 16 numbers, column-major (3D Tiles ``transform``)."""
        m = np.eye(4)
        m[:3, :3] = self._rot.T
        m[:3, 3] = self._origin
        return [float(v) for v in m.T.ravel()]

    def describe(self) -> dict[str, object]:
        """The frame as recorded in scene metadata (``asset.extras.twin.frame``)."""
        return {
            "origin": {"lon": self.lon, "lat": self.lat, "height": self.height},
            "axes": "glTF Y-up: x=east, y=up, z=-north (metres)",
            "ecef_transform": self.ecef_transform,
            "ecef_transform_note": "column-major ENU(Z-up)→ECEF; apply after glTF's Y-up→Z-up rotation",
        }


def to_gltf_axes(enu: np.ndarray) -> np.ndarray:
    """(N, 3) ENU → glTF Y-up (east, up, -north) as float32."""
    out = np.empty((len(enu), 3), np.float32)
    out[:, 0] = enu[:, 0]
    out[:, 1] = enu[:, 2]
    out[:, 2] = -enu[:, 1]
    return out
