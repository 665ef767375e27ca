"""Clearance check (净距分析): pairs of pipes closer than GB 50289 allows.

The minimum clearances are *data* (``data/gb50289_clearance.json``, with its source and
simplifications), overridable per request (:func:`clearance_table`). Method, in a local
metric frame:

* **horizontal**: pipes that do not cross and share no node are checked against the
  horizontal table: clear distance = centreline distance − (DNa + DNb)/2 (outer walls
  approximated by the nominal diameters);
* **vertical**: where two pipes cross, the elevations at the crossing are interpolated
  along each pipe from its inverts (as in the cross-section); clear distance = the upper
  pipe's invert − the lower pipe's top (invert + DN); negative means they collide.
  Pipes without inverts there are reported as ``unknown`` rather than passed.

Pipes joined at a node (a service connection, a tee) are not a clearance pair.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.ops import nearest_points

from twin.analysis.metric import frame_for
from twin.analysis.source import FeatureSet
from twin.errors import InvalidParameter

DATA = Path(__file__).parent / "data" / "gb50289_clearance.json"


@lru_cache(maxsize=1)
def _default() -> dict[str, Any]:
    return json.loads(DATA.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ClearanceTable:
    source: str
    groups: dict[str, str]
    horizontal: dict[str, float]
    vertical: dict[str, float]

    def key(self, a: str, b: str) -> str:
        ga, gb = self.groups.get(a, a), self.groups.get(b, b)
        return "|".join(sorted((ga, gb)))

    def horizontal_m(self, a: str, b: str) -> float | None:
        return self.horizontal.get(self.key(a, b))

    def vertical_m(self, a: str, b: str) -> float | None:
        return self.vertical.get(self.key(a, b))

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "groups": self.groups, "horizontal_m": self.horizontal,
                "vertical_m": self.vertical}


def clearance_table(overrides: dict[str, dict[str, float]] | None = None) -> ClearanceTable:
    """The GB 50289 table, with ``overrides`` = ``{"horizontal_m": {"gas|water": 0.8}, "vertical_m": {…}}``
    (keys are group pairs in either order; a utility name is accepted for its group)."""
    d = _default()
    t = ClearanceTable(d["source"], dict(d["groups"]), dict(d["horizontal_m"]), dict(d["vertical_m"]))
    for kind, values in (overrides or {}).items():
        if kind not in ("horizontal_m", "vertical_m"):
            raise InvalidParameter(f"clearance overrides take 'horizontal_m' and 'vertical_m', not {kind!r}")
        target = t.horizontal if kind == "horizontal_m" else t.vertical
        for pair, v in values.items():
            parts = pair.split("|")
            if len(parts) != 2 or isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
                raise InvalidParameter(f"clearance override {pair!r}: {v!r} must be 'a|b': metres in [0, 100]")
            target[t.key(*parts)] = float(v)
    if overrides:
        t = ClearanceTable(t.source + " (with overrides)", t.groups, t.horizontal, t.vertical)
    return t


@dataclass
class ClearancePair:
    kind: str  # horizontal | vertical
    a: int
    b: int
    a_code: str
    b_code: str
    a_utility: str
    b_utility: str
    required_m: float
    actual_m: float | None
    lon: float
    lat: float
    status: str  # violation | unknown

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["actual_m"] = None if self.actual_m is None else round(self.actual_m, 3)
        out["lon"], out["lat"] = round(self.lon, 7), round(self.lat, 7)
        return out


def _invert_at(props: dict[str, Any], t: float) -> float | None:
    a, b = props.get("start_invert_m"), props.get("end_invert_m")
    if a is None or b is None:
        return None
    return a + (b - a) * t


def check_clearance(pipes: FeatureSet, table: ClearanceTable) -> list[ClearancePair]:
    """Every pair of ``pipes`` violating ``table`` (and crossings whose depths are unknown)."""
    if len(pipes) < 2:
        return []
    geoms = np.asarray(pipes.geometries, dtype=object)
    frame = frame_for(shapely.union_all(geoms).envelope)
    gm = frame.to_metric(geoms)
    props = pipes.properties
    reach = max([*table.horizontal.values(), 0.0]) + max(float(p.get("diameter_mm") or 0) for p in props) / 1000
    tree = shapely.STRtree(gm)
    left, right = tree.query(gm, predicate="dwithin", distance=reach)
    out: list[ClearancePair] = []
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i >= j:
            continue
        pa, pb = props[i], props[j]
        nodes_a = {pa.get("start_node_code"), pa.get("end_node_code")} - {None}
        nodes_b = {pb.get("start_node_code"), pb.get("end_node_code")} - {None}
        if nodes_a & nodes_b:
            continue
        ua, ub = pa.get("utility") or "", pb.get("utility") or ""
        da, db = (pa.get("diameter_mm") or 0) / 1000, (pb.get("diameter_mm") or 0) / 1000
        inter = shapely.intersection(gm[i], gm[j])
        if not inter.is_empty:
            req = table.vertical_m(ua, ub)
            if req is None:
                continue
            for p in shapely.get_parts(inter):
                p = p if p.geom_type == "Point" else p.interpolate(0.5, normalized=True)
                ia = _invert_at(pa, gm[i].project(p) / gm[i].length if gm[i].length else 0)
                ib = _invert_at(pb, gm[j].project(p) / gm[j].length if gm[j].length else 0)
                lon, lat = frame.lonlat(np.array([p.x]), np.array([p.y]))
                if ia is None or ib is None:
                    out.append(ClearancePair("vertical", pipes.ids[i], pipes.ids[j], pa["code"], pb["code"], ua, ub,
                                             req, None, float(lon[0]), float(lat[0]), "unknown"))
                    continue
                clear = ia - (ib + db) if ia >= ib else ib - (ia + da)
                if clear < req - 1e-9:
                    out.append(ClearancePair("vertical", pipes.ids[i], pipes.ids[j], pa["code"], pb["code"], ua, ub,
                                             req, clear, float(lon[0]), float(lat[0]), "violation"))
            continue
        req = table.horizontal_m(ua, ub)
        if req is None:
            continue
        clear = float(shapely.distance(gm[i], gm[j])) - (da + db) / 2
        if clear < req - 1e-9:
            pa_pt, pb_pt = nearest_points(gm[i], gm[j])
            mid = shapely.Point((pa_pt.x + pb_pt.x) / 2, (pa_pt.y + pb_pt.y) / 2)
            lon, lat = frame.lonlat(np.array([mid.x]), np.array([mid.y]))
            out.append(ClearancePair("horizontal", pipes.ids[i], pipes.ids[j], pa["code"], pb["code"], ua, ub, req,
                                     clear, float(lon[0]), float(lat[0]), "violation"))
    out.sort(key=lambda c: (c.status != "violation", (c.actual_m if c.actual_m is not None else 0) - c.required_m,
                            c.a_code, c.b_code))
    return out


def section_clearance(crossings: list[Any], table: ClearanceTable) -> list[dict[str, Any]]:
    """Pairs of pipes in a cross-section closer *along the cut* than the horizontal minimum.

    ``crossings`` are :class:`twin.analysis.section.PipeCrossing`; the clear distance is
    |Δoffset| − (DNa + DNb)/2, exact when the cut runs square to the pipes (as sections are
    drawn) and an overestimate of the true gap otherwise. The vertical gap between the two
    pipes is given alongside (upper invert − lower top), for information.
    """
    out: list[dict[str, Any]] = []
    for k, a in enumerate(crossings):
        for b in crossings[k + 1:]:
            if a.id == b.id or not a.utility or not b.utility:
                continue
            req = table.horizontal_m(a.utility, b.utility)
            if req is None:
                continue
            da, db = (a.diameter_mm or 0) / 1000, (b.diameter_mm or 0) / 1000
            clear = abs(b.offset_m - a.offset_m) - (da + db) / 2
            if clear >= req - 1e-9:
                continue
            vertical = None
            if a.invert_m is not None and b.invert_m is not None:
                lo, hi = (a, b) if a.invert_m <= b.invert_m else (b, a)
                vertical = round(hi.invert_m - (lo.invert_m + (lo.diameter_mm or 0) / 1000), 3)
            out.append({"a": a.code, "b": b.code, "a_utility": a.utility, "b_utility": b.utility,
                        "kind": "horizontal", "required_m": req, "actual_m": round(clear, 3),
                        "vertical_gap_m": vertical})
    return out


__all__ = ["ClearancePair", "ClearanceTable", "check_clearance", "clearance_table", "section_clearance"]
