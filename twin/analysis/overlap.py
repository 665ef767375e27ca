"""Planning overlap (三区三线 check, 004 §8.5): how much of a project polygon falls in each zone,
each control line and each farmland grade, and whether it may be built at all.

Areas are computed in a Lambert azimuthal equal-area frame centred on the project
(exact areas, m²; 1 亩 mu = 10000/15 m²). The **verdict** is *conflict* when the
polygon takes any ecological protection red line (生态保护红线) or permanent basic
farmland (永久基本农田 — from the control line or from farmland parcels flagged
permanent-basic, whichever shows more) beyond ``tolerance_m2`` (default 0.01 m²,
float noise along shared edges); both are prohibited for construction by the
national "three zones three lines" rules, so the verdict names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from twin.analysis.metric import area_frame_for
from twin.analysis.source import FeatureSet

MU_M2 = 10_000.0 / 15.0
PROHIBITED = {"ecological_red_line": "生态保护红线 ecological protection red line",
              "permanent_basic_farmland": "永久基本农田 permanent basic farmland"}


def _m2(v: float) -> dict[str, float]:
    return {"area_m2": round(v, 2), "area_mu": round(v / MU_M2, 4)}


@dataclass
class OverlapResult:
    area_m2: float
    zones: dict[str, float] = field(default_factory=dict)
    control_lines: dict[str, float] = field(default_factory=dict)
    farmland_by_grade: dict[int, float] = field(default_factory=dict)
    farmland_permanent_basic_m2: float = 0.0
    by_village: list[tuple[str, str, float]] = field(default_factory=list)
    by_grid: list[tuple[str, str, float]] = field(default_factory=list)
    tolerance_m2: float = 0.01

    @property
    def red_line_m2(self) -> float:
        return self.control_lines.get("ecological_red_line", 0.0)

    @property
    def permanent_basic_m2(self) -> float:
        return max(self.control_lines.get("permanent_basic_farmland", 0.0), self.farmland_permanent_basic_m2)

    def verdict(self) -> dict[str, Any]:
        hits = {"ecological_red_line": self.red_line_m2, "permanent_basic_farmland": self.permanent_basic_m2}
        bad = {k: v for k, v in hits.items() if v > self.tolerance_m2}
        if bad:
            msg = "不可建设 conflict: the polygon takes " + "; ".join(
                f"{PROHIBITED[k]} {v:.1f} m² ({v / MU_M2:.3f} 亩)" for k, v in bad.items())
        else:
            msg = "no overlap with the ecological red line or permanent basic farmland"
        return {"conflict": bool(bad), "message": msg,
                **{f"{k}_m2": round(v, 2) for k, v in hits.items()}}

    def as_dict(self) -> dict[str, Any]:
        return {
            **_m2(self.area_m2),
            "zones": {k: {**_m2(v), "share": round(v / self.area_m2, 4) if self.area_m2 else 0.0}
                      for k, v in sorted(self.zones.items())},
            "control_lines": {k: _m2(v) for k, v in sorted(self.control_lines.items())},
            "farmland": {"by_grade": {str(g): _m2(v) for g, v in sorted(self.farmland_by_grade.items())},
                         "permanent_basic": _m2(self.farmland_permanent_basic_m2),
                         "total": _m2(sum(self.farmland_by_grade.values()))},
            "by_village": [{"code": c, "name": n, **_m2(v)} for c, n, v in self.by_village],
            "by_grid": [{"code": c, "name": n, **_m2(v)} for c, n, v in self.by_grid],
            "verdict": self.verdict(),
        }


def _areas(poly_m: shapely.Geometry, fs: FeatureSet, frame) -> np.ndarray:  # noqa: ANN001
    if not len(fs):
        return np.zeros(0)
    geoms = frame.to_metric(np.asarray(fs.geometries, dtype=object))
    geoms = shapely.make_valid(geoms)
    return shapely.area(shapely.intersection(geoms, poly_m))


def overlap_analysis(poly: shapely.Geometry, zones: FeatureSet, lines: FeatureSet, farmland: FeatureSet,
                     grids: FeatureSet, tolerance_m2: float = 0.01) -> OverlapResult:
    """Overlap of ``poly`` (lon/lat polygon) with each layer's features (lon/lat), in m²."""
    frame = area_frame_for(poly)
    pm = frame.to_metric(poly)
    res = OverlapResult(area_m2=float(pm.area), tolerance_m2=tolerance_m2)
    for fs, out in ((zones, res.zones), (lines, res.control_lines)):
        for props, a in zip(fs.properties, _areas(pm, fs, frame), strict=True):
            if a > 0:
                out[props["kind"]] = out.get(props["kind"], 0.0) + float(a)
    for props, a in zip(farmland.properties, _areas(pm, farmland, frame), strict=True):
        if a > 0:
            res.farmland_by_grade[int(props["grade"])] = res.farmland_by_grade.get(int(props["grade"]), 0.0) + float(a)
            if props.get("is_permanent_basic"):
                res.farmland_permanent_basic_m2 += float(a)
    for props, a in zip(grids.properties, _areas(pm, grids, frame), strict=True):
        if a > tolerance_m2:
            row = (props["code"], props["name"], float(a))
            if props.get("level") == "village":
                res.by_village.append(row)
            elif props.get("level") == "unit":
                res.by_grid.append(row)
    res.by_village.sort(key=lambda r: -r[2])
    res.by_grid.sort(key=lambda r: -r[2])
    return res


__all__ = ["MU_M2", "OverlapResult", "overlap_analysis"]
