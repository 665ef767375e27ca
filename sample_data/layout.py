"""Town outline, centre, industrial park, river and the three zones (local metres)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from sample_data.terrain import Terrain

BASE_AREA_M2 = 60e6  # at scale 1


@dataclass
class Layout:
    scale: float
    radius: float
    town: BaseGeometry
    terrain: Terrain
    river: BaseGeometry
    centre_xy: tuple[float, float]
    centre: BaseGeometry
    park: BaseGeometry
    park_angle: float
    eco_width: float
    zones: dict[str, BaseGeometry] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def lin(self) -> float:
        """Linear scale factor relative to scale 1."""
        return float(np.sqrt(self.scale))


def _blob(cx: float, cy: float, r: float, rng: np.random.Generator, n: int = 96, rough: float = 0.08):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rr = r * (1 + rough * np.sin(3 * t + rng.uniform(0, 6.3)) + 0.6 * rough * np.sin(5 * t + rng.uniform(0, 6.3)))
    return shapely.Polygon(np.column_stack([cx + rr * np.cos(t), cy + rr * np.sin(t)]))


def make_layout(rng: np.random.Generator, scale: float) -> Layout:
    area = BASE_AREA_M2 * scale
    town = _blob(0, 0, 1.0, rng, n=180, rough=0.09)
    k = np.sqrt(area / town.area)
    town = shapely.affinity.scale(town, k, k, origin=(0, 0))
    radius = float(np.sqrt(area / np.pi))
    terrain = Terrain.random(rng, radius)
    river = terrain.river_polygon(margin=0.3 * radius)
    eco_width = float(np.clip(0.025 * 2 * radius, 40, 220))

    rc = 0.24 * radius
    cx = rng.uniform(-0.15, 0.0) * radius
    river_top = float(np.max(terrain.river_y(np.linspace(cx - rc, cx + rc, 50))))
    cy = max(rng.uniform(0.0, 0.1) * radius, river_top + terrain.river_half_width + eco_width + rc + 0.06 * radius)
    centre = _blob(cx, cy, rc, rng, rough=0.06)

    park_angle = float(rng.uniform(-0.25, 0.25))
    pw, ph = 0.40 * radius, 0.26 * radius
    px, py = cx + 0.55 * radius, cy + 0.12 * radius
    from sample_data.geo import rect_polygons
    park = rect_polygons([px], [py], [pw], [ph], [park_angle])[0]
    park = park.intersection(town.buffer(-0.05 * radius))

    eco = river.buffer(eco_width).intersection(town)
    urban = shapely.union(centre, park).buffer(0.02 * radius).intersection(town).difference(eco)
    agri = town.difference(eco).difference(urban)
    lay = Layout(scale=scale, radius=radius, town=town, terrain=terrain, river=river,
                 centre_xy=(cx, cy), centre=centre, park=park, park_angle=park_angle, eco_width=eco_width)
    lay.zones = {"ecological": eco, "urban": urban, "agricultural": agri}
    return lay
