"""Pipeline cross-section (断面分析): the pipes a cut line crosses, at their depth, and the ground.

Method, in a local metric frame (:mod:`twin.analysis.metric`):

* each pipe is intersected with the cut line; a crossing's **offset** is its distance
  along the cut from the cut's first point;
* the pipe's **invert** (inside bottom, m above datum) at the crossing is interpolated
  linearly along the pipe between its start and end inverts (by length), as pipes are
  laid at a constant grade between nodes; with inverts missing, from the recorded depths;
* the **ground** comes from the DEM (bilinear); off the DEM, from the pipe record
  (invert + diameter + recorded cover) and ``ground_source`` says so;
* **top** = invert + diameter (wall thickness ignored — records give the nominal DN),
  ``top_depth_m`` = ground − top (the cover), ``invert_depth_m`` = ground − invert;
* the ground **profile** is sampled every ``step_m`` along the cut.

A pipe running *along* the cut (collinear overlap) is reported once at the middle of the
shared stretch with ``along_cut: true``, since it has no single crossing point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from twin.analysis.metric import frame_for
from twin.analysis.source import FeatureSet

Elevation = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (lon, lat) → metres, NaN where unknown


@dataclass
class PipeCrossing:
    id: int
    code: str | None
    utility: str | None
    material: str | None
    diameter_mm: float | None
    offset_m: float
    lon: float
    lat: float
    ground_m: float | None
    ground_source: str  # dem | pipe_record | none
    invert_m: float | None
    top_m: float | None
    top_depth_m: float | None
    invert_depth_m: float | None
    gravity: bool | None
    along_cut: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k, v in out.items():
            if isinstance(v, float):
                out[k] = round(v, 7 if k in ("lon", "lat") else 3)
        return out


@dataclass
class CrossSection:
    length_m: float
    crossings: list[PipeCrossing]
    profile_offsets_m: np.ndarray
    profile_ground_m: np.ndarray  # NaN where the DEM has no value
    meta: dict[str, Any] = field(default_factory=dict)


def _lerp(a: float | None, b: float | None, t: float) -> float | None:
    if a is None or b is None:
        return a if b is None else (b if a is None else None)
    return a + (b - a) * t


def cross_section(cut: shapely.LineString, pipes: FeatureSet, ground: Elevation | None = None,
                  step_m: float | None = None) -> CrossSection:
    """The cross-section of ``pipes`` (lon/lat lines with pipeline properties) along ``cut`` (lon/lat)."""
    frame = frame_for(cut)
    cut_m = frame.to_metric(cut)
    length = float(cut_m.length)
    step = step_m or max(length / 200.0, 0.5)
    offs = np.append(np.arange(0.0, length, step), length)
    pts = shapely.line_interpolate_point(cut_m, offs)
    plon, plat = frame.lonlat(shapely.get_x(pts), shapely.get_y(pts))
    profile = ground(plon, plat) if ground is not None else np.full(len(offs), np.nan)

    crossings: list[PipeCrossing] = []
    if len(pipes):
        pipes_m = frame.to_metric(np.asarray(pipes.geometries, dtype=object))
        hit = np.flatnonzero(shapely.intersects(pipes_m, cut_m))
        raw: list[tuple[int, shapely.Point, bool]] = []
        for i in hit:
            inter = shapely.intersection(pipes_m[i], cut_m)
            for part in shapely.get_parts(inter):
                if part.geom_type == "Point":
                    raw.append((int(i), part, False))
                elif not part.is_empty:  # collinear stretch
                    raw.append((int(i), part.interpolate(0.5, normalized=True), True))
        if raw:
            xs = np.array([p.x for _, p, _ in raw])
            ys = np.array([p.y for _, p, _ in raw])
            lons, lats = frame.lonlat(xs, ys)
            gz = ground(lons, lats) if ground is not None else np.full(len(raw), np.nan)
            for (j, p, along), lon, lat, g in zip(raw, lons, lats, gz, strict=True):
                crossings.append(_crossing(pipes.ids[j], pipes.properties[j], pipes_m[j], p, cut_m, float(lon),
                                           float(lat), float(g), along))
    crossings.sort(key=lambda c: (c.offset_m, c.id))
    return CrossSection(length, crossings, offs, np.asarray(profile, dtype=float))


def _crossing(fid: int, props: dict[str, Any], pipe_m: shapely.LineString, p: shapely.Point,
              cut_m: shapely.LineString, lon: float, lat: float, g: float, along: bool) -> PipeCrossing:
    t = float(pipe_m.project(p) / pipe_m.length) if pipe_m.length > 0 else 0.0
    dn = props.get("diameter_mm")
    d_m = (dn or 0.0) / 1000.0
    invert = _lerp(props.get("start_invert_m"), props.get("end_invert_m"), t)
    cover = _lerp(props.get("start_depth_m"), props.get("end_depth_m"), t)
    source = "dem"
    if not np.isfinite(g):
        if invert is not None and cover is not None:
            g, source = invert + d_m + cover, "pipe_record"
        else:
            g, source = float("nan"), "none"
    ground_m = g if np.isfinite(g) else None
    if invert is None and cover is not None and ground_m is not None:
        invert = ground_m - cover - d_m
    top = invert + d_m if invert is not None else None
    return PipeCrossing(
        id=fid, code=props.get("code"), utility=props.get("utility"), material=props.get("material"),
        diameter_mm=dn, offset_m=float(cut_m.project(p)), lon=lon, lat=lat, ground_m=ground_m,
        ground_source=source, invert_m=invert, top_m=top,
        top_depth_m=(ground_m - top) if ground_m is not None and top is not None else None,
        invert_depth_m=(ground_m - invert) if ground_m is not None and invert is not None else None,
        gravity=props.get("gravity"), along_cut=along,
    )


__all__ = ["CrossSection", "PipeCrossing", "cross_section"]
