"""Evaluation points (评价点位, CJJ/T 312 §2.0.6) with indicator and inspection items."""

from __future__ import annotations

import numpy as np

from sample_data import places

POINT_KINDS = {
    # category: (share, indicator, inspection items, Chinese name)
    "market": (0.12, "农贸市场环境秩序", ["垃圾清运", "占道经营", "地面保洁", "车辆停放"], "农贸市场"),
    "school_gate": (0.1, "校园周边秩序", ["交通秩序", "流动摊贩", "护学岗"], "学校门口"),
    "bus_stop": (0.16, "公交站点设施完好", ["站牌完好", "候车亭保洁", "乱张贴"], "公交站"),
    "river_bank": (0.14, "河道岸线整洁", ["水面漂浮物", "岸坡垃圾", "违法排口"], "河岸"),
    "construction": (0.08, "工地扬尘管控", ["围挡", "裸土覆盖", "车辆冲洗", "喷淋降尘"], "工地"),
    "public_toilet": (0.12, "公厕管理", ["保洁", "设施完好", "开放时间"], "公厕"),
    "garbage_station": (0.14, "垃圾分类收集点", ["分类投放", "满溢", "异味"], "垃圾收集点"),
    "main_road": (0.14, "主干道市容", ["道路破损", "违章停车", "绿化带"], "主干道"),
}


def make_points(rng, lay, ctx, eval_geoms: np.ndarray, eval_codes: list[str]) -> tuple[list[dict], np.ndarray]:
    n = max(len(POINT_KINDS), int(round(300 * lay.scale)))
    rows, pts = [], []
    k = 0
    for cat, (share, ind, items, cn) in POINT_KINDS.items():
        m = max(1, int(round(n * share)))
        if cat == "bus_stop" or cat == "main_road":
            p = places.on_lines(rng, ctx["major_roads"], m, (9, 14))
        elif cat == "river_bank":
            p = places.river_bank(rng, lay.terrain, m, lay.town, gap=(3.0, 12.0))
        elif cat == "construction" and len(ctx["sites"]):
            p = places.near_polys(rng, ctx["sites"], m, (2.0, 6.0))
        else:
            p = places.near_polys(rng, ctx["bldg_all"], m, (3.0, 10.0))
        codes = places.locate(p, eval_geoms, eval_codes)
        for j in range(m):
            if codes[j] is None:
                continue
            k += 1
            rows.append({
                "code": f"PJD{k:05d}", "name": f"{cn}{k:03d}", "category": cat, "indicator": ind,
                "inspection_items": list(items), "evaluation_grid_code": codes[j],
                "score": round(float(np.clip(rng.normal(88, 6), 55, 100)), 1),
            })
            pts.append(p[j])
    return rows, np.array(pts)
