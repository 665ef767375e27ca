"""Terrain of a Yangtze-delta plain: 2-8 m, a river crossing west to east, low mounds.

``Terrain.elevation_xy`` (local metres) and ``Town.elevation`` (lon/lat) are the
one source of ground elevation: buildings, pipe nodes and the DEM sample it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

WATER_LEVEL_M = 1.2  # river water surface, 1985 national height datum


@dataclass
class Terrain:
    half: float  # half side of the town square, metres
    river_y0: float
    river_amp: tuple[float, float]
    river_wave: tuple[float, float]
    river_phase: tuple[float, float]
    river_half_width: float
    base: float
    tilt: tuple[float, float]  # metres per km, east and north
    mounds: np.ndarray  # (n, 4): x, y, amplitude m, sigma m
    wave_phase: tuple[float, float]

    @classmethod
    def random(cls, rng: np.random.Generator, half: float) -> Terrain:
        n_mounds = max(3, int(round(10 * (half / 3873.0) ** 2)))
        mounds = np.column_stack([
            rng.uniform(-half, half, n_mounds),
            rng.uniform(-0.2 * half, half, n_mounds),
            rng.uniform(0.8, 2.6, n_mounds),
            rng.uniform(120, 420, n_mounds),
        ])
        return cls(
            half=half,
            river_y0=-0.45 * half,
            river_amp=(0.05 * half, 0.02 * half),
            river_wave=(rng.uniform(1.1, 1.5) * 2 * half, rng.uniform(0.35, 0.5) * 2 * half),
            river_phase=(rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)),
            river_half_width=float(np.clip(0.008 * half, 12, 40)),
            base=rng.uniform(3.3, 3.8),
            tilt=(rng.uniform(-0.15, 0.15), rng.uniform(0.05, 0.2)),
            mounds=mounds,
            wave_phase=(rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)),
        )

    # --- river ----------------------------------------------------------------
    def river_y(self, x):
        x = np.asarray(x, dtype=float)
        (a1, a2), (l1, l2), (p1, p2) = self.river_amp, self.river_wave, self.river_phase
        return self.river_y0 + a1 * np.sin(2 * np.pi * x / l1 + p1) + a2 * np.sin(2 * np.pi * x / l2 + p2)

    def river_slope(self, x):
        x = np.asarray(x, dtype=float)
        (a1, a2), (l1, l2), (p1, p2) = self.river_amp, self.river_wave, self.river_phase
        return (a1 * 2 * np.pi / l1 * np.cos(2 * np.pi * x / l1 + p1)
                + a2 * 2 * np.pi / l2 * np.cos(2 * np.pi * x / l2 + p2))

    def river_distance(self, x, y):
        """Approximate distance (m) from the river centreline; negative south of it."""
        x = np.asarray(x, dtype=float)
        return (np.asarray(y, dtype=float) - self.river_y(x)) / np.sqrt(1 + self.river_slope(x) ** 2)

    def river_centerline(self, margin: float = 200.0, step: float = 20.0) -> shapely.LineString:
        xs = np.arange(-self.half - margin, self.half + margin + step, step)
        return shapely.LineString(np.column_stack([xs, self.river_y(xs)]))

    def river_polygon(self, margin: float = 200.0) -> shapely.Polygon:
        return self.river_centerline(margin).buffer(self.river_half_width, cap_style="flat")

    # --- ground -----------------------------------------------------------------
    def elevation_xy(self, x, y):
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        z = (self.base + self.tilt[0] * x / 1000 + self.tilt[1] * y / 1000
             + 0.45 * np.sin(x / 1700 + self.wave_phase[0]) * np.cos(y / 1300 + self.wave_phase[1]))
        for mx, my, amp, sig in self.mounds:
            z = z + amp * np.exp(-((x - mx) ** 2 + (y - my) ** 2) / (2 * sig * sig))
        d = np.abs(self.river_distance(x, y))
        w = self.river_half_width
        # the river bank slopes down over ~150 m towards the water
        z = z - (z - (WATER_LEVEL_M + 0.8)) * np.exp(-np.maximum(d - w, 0) / 150.0)
        z = np.clip(z, 2.0, 8.0)
        return np.where(d <= w, WATER_LEVEL_M, z)
