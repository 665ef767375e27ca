"""Dust analysis and heat map (扬尘分析, seed 002 §5.1.5), with PM10 warnings (§5.1.1).

For every dust monitor, four factors (the seed's list):

=================  ====================================================  ===========
factor             value                                                 worse when
=================  ====================================================  ===========
``pm10``           its latest PM10 reading, µg/m³                        higher
``road_distance``  metres to the nearest heavy-traffic road section        nearer
``trucks``         muck trucks within ``truck_radius_m`` of it             more
``site_distance``  metres to the nearest large active construction site    nearer
=================  ====================================================  ===========

Each factor is *graded* 0…k by its ascending thresholds (k = number of thresholds):
for "higher is worse" the grade is how many thresholds the value reaches, for
"nearer is worse" how many thresholds the distance is within. A monitor's **score** is
the weighted mean of its grades scaled to 0–100:
``score = 100 · Σ wᶠ·gradeᶠ/kᶠ / Σ wᶠ``. A monitor without a reading gets PM10 grade 0.

The heat map spreads the monitor scores over a metric grid (cells of ``cell_m``): a
cell's score is the largest ``scoreₘ · exp(−½ (dₘ / influence_m)²)`` over the monitors,
dₘ the ground distance from the cell centre to monitor m — the dust of the worst nearby
source, fading with distance (a Gaussian plume radius); cells farther than
3 × ``influence_m`` from every monitor score 0. Cell **grades** 0–4 (none, light,
moderate, heavy, severe) follow ``grade_thresholds`` on the score. Thresholds and
weights are configuration (:class:`DustConfig`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from twin.analysis.metric import LocalFrame, frame_at
from twin.analysis.source import FeatureSet
from twin.errors import InvalidParameter


@dataclass(frozen=True)
class DustFactor:
    name: str
    weight: float
    thresholds: tuple[float, ...]  # ascending
    higher_is_worse: bool
    unit: str = ""

    def grade(self, value: float | None) -> int:
        if value is None or not np.isfinite(value):
            return 0
        if self.higher_is_worse:
            return int(sum(value >= t for t in self.thresholds))
        return int(sum(value <= t for t in self.thresholds))


DEFAULT_FACTORS: tuple[DustFactor, ...] = (
    DustFactor("pm10", 0.4, (75.0, 150.0, 250.0, 350.0), True, "µg/m³"),  # GB 3095-2012 grade II: 150 daily
    DustFactor("road_distance", 0.2, (50.0, 100.0, 200.0, 400.0), False, "m"),
    DustFactor("trucks", 0.2, (1.0, 3.0, 5.0, 10.0), True, "trucks"),
    DustFactor("site_distance", 0.2, (50.0, 100.0, 200.0, 500.0), False, "m"),
)
GRADE_NAMES = ("none", "light", "moderate", "heavy", "severe")


@dataclass(frozen=True)
class DustConfig:
    factors: tuple[DustFactor, ...] = DEFAULT_FACTORS
    heavy_vehicles_per_day: float = 1000.0  # a road section is heavy-traffic from this many heavy vehicles/day
    heavy_road_volume: float = 15000.0  # … or from this total volume
    large_site_m2: float = 5000.0
    site_statuses: tuple[str, ...] = ("active",)
    truck_radius_m: float = 300.0
    influence_m: float = 250.0
    cell_m: float = 25.0
    grade_thresholds: tuple[float, float, float, float] = (20.0, 40.0, 60.0, 80.0)
    pm10_limit: float = 150.0  # used when a monitor has no own threshold

    def __post_init__(self) -> None:
        for f in self.factors:
            if f.weight < 0 or list(f.thresholds) != sorted(f.thresholds) or not f.thresholds:
                raise InvalidParameter(f"dust factor {f.name}: weight ≥ 0 and ascending thresholds required")
        if sum(f.weight for f in self.factors) <= 0:
            raise InvalidParameter("dust factor weights must not all be 0")
        if not (self.cell_m > 0 and self.influence_m > 0 and self.truck_radius_m >= 0):
            raise InvalidParameter("cell_m and influence_m must be > 0, truck_radius_m ≥ 0")


@dataclass(frozen=True)
class Monitor:
    code: str
    lon: float
    lat: float
    pm10: float | None = None
    pm10_limit: float | None = None


@dataclass
class MonitorScore:
    monitor: Monitor
    values: dict[str, float | None]
    grades: dict[str, int]
    score: float
    pm10_over_limit: bool

    def as_dict(self) -> dict[str, Any]:
        m = self.monitor
        return {"code": m.code, "lon": m.lon, "lat": m.lat, "score": round(self.score, 2),
                "factors": {k: {"value": None if v is None else round(float(v), 2), "grade": self.grades[k]}
                            for k, v in self.values.items()},
                "pm10_over_limit": self.pm10_over_limit}


def cell_grade(score: float | np.ndarray, cfg: DustConfig) -> np.ndarray:
    return np.searchsorted(np.asarray(cfg.grade_thresholds), np.asarray(score), side="right")


def score_monitors(monitors: Sequence[Monitor], roads: FeatureSet, sites: FeatureSet,
                   trucks: Sequence[tuple[float, float]], cfg: DustConfig) -> list[MonitorScore]:
    """Each monitor's factor values, grades and weighted score (see the module docstring)."""
    if not monitors:
        return []
    lon0 = float(np.mean([m.lon for m in monitors]))
    lat0 = float(np.mean([m.lat for m in monitors]))
    frame = frame_at(lon0, lat0)
    pts = frame.to_metric(shapely.points([(m.lon, m.lat) for m in monitors]))
    heavy = [g for g, p in zip(roads.geometries, roads.properties, strict=True)
             if (p.get("traffic_volume") or 0) * (p.get("heavy_share") or 0) >= cfg.heavy_vehicles_per_day
             or (p.get("traffic_volume") or 0) >= cfg.heavy_road_volume]
    large = [g for g, p in zip(sites.geometries, sites.properties, strict=True)
             if p.get("status") in cfg.site_statuses and (p.get("area_m2") or 0) >= cfg.large_site_m2]
    road_d = _nearest(frame, pts, heavy)
    site_d = _nearest(frame, pts, large)
    if trucks:
        tp = frame.to_metric(shapely.points(np.asarray(trucks, dtype=float)))
        tx, ty = shapely.get_x(tp), shapely.get_y(tp)
        px, py = shapely.get_x(pts), shapely.get_y(pts)
        dist = np.hypot(px[:, None] - tx[None, :], py[:, None] - ty[None, :])
        n_trucks = (dist <= cfg.truck_radius_m).sum(axis=1).astype(float)
    else:
        n_trucks = np.zeros(len(monitors))
    wsum = sum(f.weight for f in cfg.factors)
    out = []
    for k, m in enumerate(monitors):
        values: dict[str, float | None] = {"pm10": m.pm10, "road_distance": _opt(road_d[k]),
                                           "trucks": float(n_trucks[k]), "site_distance": _opt(site_d[k])}
        grades = {f.name: f.grade(values.get(f.name)) for f in cfg.factors}
        score = 100.0 * sum(f.weight * grades[f.name] / len(f.thresholds) for f in cfg.factors) / wsum
        limit = m.pm10_limit if m.pm10_limit is not None else cfg.pm10_limit
        out.append(MonitorScore(m, {f.name: values.get(f.name) for f in cfg.factors}, grades, score,
                                m.pm10 is not None and m.pm10 > limit))
    return out


def _opt(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _nearest(frame: LocalFrame, pts: np.ndarray, geoms: list) -> np.ndarray:  # noqa: ANN001
    if not geoms:
        return np.full(len(pts), np.inf)
    g = frame.to_metric(np.asarray(geoms, dtype=object))
    tree = shapely.STRtree(g)
    _, dist = tree.query_nearest(pts, return_distance=True, all_matches=False)
    return np.asarray(dist, dtype=float)


def heat_at(lon: np.ndarray, lat: np.ndarray, scored: Sequence[MonitorScore], cfg: DustConfig) -> np.ndarray:
    """The heat score (0–100) at lon/lat points (any shape)."""
    lon = np.asarray(lon, dtype=float)
    out = np.zeros(lon.shape)
    live = [s for s in scored if s.score > 0]
    if not live or lon.size == 0:
        return out
    frame = frame_at(float(np.mean([s.monitor.lon for s in live])), float(np.mean([s.monitor.lat for s in live])))
    x, y = frame.xy(lon.ravel(), np.asarray(lat, dtype=float).ravel())
    mx, my = frame.xy(np.array([s.monitor.lon for s in live]), np.array([s.monitor.lat for s in live]))
    scores = np.array([s.score for s in live])
    best = np.zeros(x.shape)
    reach = 3.0 * cfg.influence_m
    near = (mx + reach >= x.min()) & (mx - reach <= x.max()) & (my + reach >= y.min()) & (my - reach <= y.max())
    for k in np.flatnonzero(near):  # only the monitors that reach these points (a tile: a handful)
        d2 = (x - mx[k]) ** 2 + (y - my[k]) ** 2
        v = scores[k] * np.exp(-0.5 * d2 / cfg.influence_m**2)
        v[d2 > reach**2] = 0.0
        np.maximum(best, v, out=best)
    return best.reshape(lon.shape)


@dataclass
class HeatGrid:
    frame: LocalFrame
    cell_m: float
    x0: float
    y0: float
    scores: np.ndarray  # rows (south→north) × cols
    grades: np.ndarray
    monitors: list[MonitorScore] = field(default_factory=list)

    def cells(self, min_score: float = 1.0) -> list[dict[str, Any]]:
        """GeoJSON features of the cells scoring at least ``min_score`` (lon/lat polygons)."""
        rows, cols = np.nonzero(self.scores >= min_score)
        if not len(rows):
            return []
        c = self.cell_m
        boxes = shapely.box(self.x0 + cols * c, self.y0 + rows * c, self.x0 + (cols + 1) * c, self.y0 + (rows + 1) * c)
        ll = self.frame.to_lonlat(boxes)
        return [{"type": "Feature", "id": f"{r}-{q}", "geometry": shapely.geometry.mapping(g),
                 "properties": {"score": round(float(self.scores[r, q]), 2), "grade": int(self.grades[r, q]),
                                "grade_name": GRADE_NAMES[int(self.grades[r, q])]}}
                for r, q, g in zip(rows.tolist(), cols.tolist(), ll, strict=True)]


def heat_grid(bbox: tuple[float, float, float, float], scored: Sequence[MonitorScore], cfg: DustConfig,
              max_cells: int = 4_000_000) -> HeatGrid:
    """The heat grid over a lon/lat ``bbox``: square cells of ``cfg.cell_m`` metres in a local frame
    centred on the bbox, aligned to that frame's origin."""
    minx, miny, maxx, maxy = bbox
    frame = frame_at((minx + maxx) / 2, (miny + maxy) / 2)
    corners = frame.to_metric(shapely.box(*bbox))
    bx0, by0, bx1, by1 = corners.bounds
    c = cfg.cell_m
    x0, y0 = np.floor(bx0 / c) * c, np.floor(by0 / c) * c
    fcols, frows = np.ceil((bx1 - x0) / c), np.ceil((by1 - y0) / c)
    if not fcols * frows <= max_cells:  # counted in floats first: a tiny cell (5e-324 m) makes them inf or NaN
        from twin.errors import LimitExceeded

        raise LimitExceeded(f"{fcols * frows:.0f} cells of {c:g} m; at most {max_cells}: use larger cells or a smaller bbox")
    ncols, nrows = int(fcols), int(frows)
    cx = x0 + (np.arange(ncols) + 0.5) * c
    cy = y0 + (np.arange(nrows) + 0.5) * c
    scores = np.zeros((nrows, ncols))
    live = [s for s in scored if s.score > 0]
    if live:
        mx, my = frame.xy(np.array([s.monitor.lon for s in live]), np.array([s.monitor.lat for s in live]))
        reach = 3.0 * cfg.influence_m
        for k, s in enumerate(live):  # each monitor touches only the cells within its reach
            c0, c1 = np.searchsorted(cx, [mx[k] - reach, mx[k] + reach])
            r0, r1 = np.searchsorted(cy, [my[k] - reach, my[k] + reach])
            if c0 >= c1 or r0 >= r1:
                continue
            d2 = (cx[None, c0:c1] - mx[k]) ** 2 + (cy[r0:r1, None] - my[k]) ** 2
            v = s.score * np.exp(-0.5 * d2 / cfg.influence_m**2)
            v[d2 > reach**2] = 0.0
            np.maximum(scores[r0:r1, c0:c1], v, out=scores[r0:r1, c0:c1])
    return HeatGrid(frame, c, float(x0), float(y0), scores, cell_grade(scores, cfg), list(scored))


#: colour ramp of the heat tiles by grade (transparent at none), RGBA
GRADE_RGBA = np.array([[0, 0, 0, 0], [255, 235, 130, 120], [255, 170, 60, 160], [240, 90, 40, 190],
                       [170, 20, 40, 210]], dtype=np.uint8)


def heat_rgba(scores: np.ndarray, cfg: DustConfig) -> np.ndarray:
    """RGBA (… × 4, uint8) of scores, by grade."""
    return GRADE_RGBA[cell_grade(scores, cfg)]


__all__ = ["DEFAULT_FACTORS", "DustConfig", "DustFactor", "GRADE_NAMES", "HeatGrid", "Monitor", "MonitorScore",
           "heat_at", "heat_grid", "heat_rgba", "score_monitors"]
