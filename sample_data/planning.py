"""Three zones (三区) and three lines (三线), consistent with each other and with the farmland."""

from __future__ import annotations

import numpy as np
import shapely

from sample_data.layout import Layout

RED_LINE = 0.6  # the ecological red line: the river buffered by RED_LINE x the ecological zone width
ZONE_NAMES = {"ecological": "生态空间", "agricultural": "农业空间", "urban": "城镇空间"}
LINE_NAMES = {"ecological_red_line": "生态保护红线", "permanent_basic_farmland": "永久基本农田",
              "urban_development_boundary": "城镇开发边界"}


def _mp(g):
    g = shapely.make_valid(g)
    parts = [p for p in shapely.get_parts(g) if p.geom_type == "Polygon" and p.area > 1.0]
    if not parts and g.geom_type == "GeometryCollection":
        parts = [q for p in g.geoms for q in shapely.get_parts(p) if q.geom_type == "Polygon"]
    return shapely.MultiPolygon(parts)


def zones(lay: Layout) -> tuple[list[dict], list]:
    rows, geoms = [], []
    for i, kind in enumerate(("ecological", "agricultural", "urban")):
        g = _mp(lay.zones[kind])
        rows.append({"code": f"SQ{i + 1:02d}", "kind": kind, "name": f"江畔镇{ZONE_NAMES[kind]}",
                     "area_m2": round(float(g.area), 1)})
        geoms.append(g)
    return rows, geoms


def control_lines(lay: Layout, perm_parcels: np.ndarray) -> tuple[list[dict], list]:
    eco, agri, urban = lay.zones["ecological"], lay.zones["agricultural"], lay.zones["urban"]
    red = lay.river.buffer(RED_LINE * lay.eco_width).intersection(eco.buffer(-1.0))
    if len(perm_parcels):
        pbf = shapely.union_all(shapely.buffer(perm_parcels, 2.0, join_style="mitre")).intersection(agri.buffer(-1.0))
    else:
        pbf = shapely.Polygon()
    udb = shapely.union(lay.centre, lay.park).intersection(urban.buffer(-1.0))
    rows, geoms = [], []
    for i, (kind, g) in enumerate((("ecological_red_line", red), ("permanent_basic_farmland", pbf),
                                   ("urban_development_boundary", udb))):
        g = _mp(g)
        if g.is_empty:
            continue
        rows.append({"code": f"SX{i + 1:02d}", "kind": kind, "name": f"江畔镇{LINE_NAMES[kind]}",
                     "area_m2": round(float(g.area), 1)})
        geoms.append(g)
    return rows, geoms
