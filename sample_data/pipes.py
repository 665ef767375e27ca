"""Underground pipe networks following the roads: 7 utilities, nodes and 30-120 m segments.

Each utility's network is the road network (a subset per utility) translated by a
utility-specific offset so utilities run side by side rather than on top of each
other.  Gravity networks (rain, sewage) are oriented by shortest-path distance to
their outlets (river outfalls / treatment plants) and their inverts are computed
upstream-first so that every segment falls (start_invert_m > end_invert_m) with at
least the minimum cover.
"""

from __future__ import annotations

import numpy as np
import shapely

from sample_data.layout import Layout
from sample_data.network import components, dijkstra, endpoints_graph, node_lines, split_line
from sample_data.roads import Road

UTILITIES = ("water_supply", "rain", "sewage", "gas", "heat", "power", "telecom")
PREFIX = {"water_supply": "JS", "rain": "YS", "sewage": "WS", "gas": "RQ", "heat": "RL", "power": "DL", "telecom": "TX"}
OFFSET = {"water_supply": (3.0, -1.0), "rain": (-1.0, 2.0), "sewage": (1.0, -2.5), "gas": (-3.0, 1.0),
          "heat": (2.0, 3.0), "power": (-2.0, -2.0), "telecom": (0.0, 1.5)}
COVER = {"water_supply": (1.0, 1.3), "gas": (0.9, 1.2), "heat": (1.2, 1.6), "power": (0.7, 1.0),
         "telecom": (0.6, 0.9), "rain": (0.9, 1.1), "sewage": (1.2, 1.4)}
OWNER = {"water_supply": "江畔自来水有限公司", "rain": "江畔镇水务站", "sewage": "江畔污水处理有限公司",
         "gas": "江畔燃气有限公司", "heat": "园区热电有限公司", "power": "江畔供电所", "telecom": "江畔通信管道有限公司"}
GRAVITY = ("rain", "sewage")
MAX_SEG = 110.0
MAX_SEG_GRAVITY = {"rain": 80.0, "sewage": 75.0}  # manhole spacing for DN <= 600 (GB 50014)
# network coverage (~300 km in all at scale 1): share of hamlets / of centre and park streets served
WATER_HAMLETS, SEWER_HAMLETS = 0.05, 0.03
RAIN_STREETS, SEWER_STREETS, GAS_STREETS, HEAT_STREETS, TELECOM_STREETS = 0.6, 0.6, 0.5, 0.3, 0.25


def _zone(lay: Layout, mids: np.ndarray) -> np.ndarray:
    z = np.full(len(mids), "", dtype=object)
    z[shapely.contains_xy(lay.park.buffer(15), mids[:, 0], mids[:, 1])] = "park"
    z[shapely.contains_xy(lay.centre, mids[:, 0], mids[:, 1])] = "centre"
    return z


def _wanted(util: str, r: Road, zone: str, hamlet_draw: float, street_draw: float) -> bool:
    """Whether ``util`` runs along road ``r``; ``hamlet_draw`` / ``street_draw`` are per-utility uniform draws
    per hamlet / per road, so whole hamlets and whole streets get (or lack) a network."""
    urban = zone in ("centre", "park")
    lane = r.area == "hamlet" and not r.name.endswith("进村路")
    conn = r.area == "hamlet" and r.name.endswith("进村路")
    major = r.road_class in ("arterial", "collector") and r.area != "hamlet"
    street = r.road_class == "local" and r.area != "hamlet"  # a centre or park street
    if util == "water_supply":
        return urban or (major and r.road_class == "collector") or ((conn or lane) and hamlet_draw < WATER_HAMLETS)
    if util == "rain":
        return urban and (not street or street_draw < RAIN_STREETS)
    if util == "sewage":
        return (urban and (not street or street_draw < SEWER_STREETS)) or (lane and hamlet_draw < SEWER_HAMLETS)
    if util == "gas":
        return zone == "centre" and (not street or street_draw < GAS_STREETS)
    if util == "heat":
        return zone == "park" and (not street or street_draw < HEAT_STREETS)
    if util == "power":
        return urban and r.road_class in ("arterial", "collector")
    if util == "telecom":
        return urban and (not street or street_draw < TELECOM_STREETS)
    return False


def _water_dn(r: Road, zone: str) -> float:
    if r.road_class == "arterial":
        return 600.0
    if r.road_class == "collector":
        return 400.0 if zone != "" else 300.0
    if zone == "park":
        return 300.0
    if zone == "centre":
        return 200.0
    return 110.0 if r.width > 4 else 63.0


def _pressure_attrs(util: str, r: Road, zone: str, rng) -> tuple[float, str, float | None]:
    """(diameter_mm, material, pressure_mpa)."""
    if util == "water_supply":
        dn = _water_dn(r, zone)
        return dn, ("ductile iron" if dn >= 300 else "PE"), round(float(rng.uniform(0.25, 0.4)), 2)
    if util == "gas":
        if r.road_class in ("arterial", "collector"):
            return 300.0 if r.road_class == "arterial" else 200.0, "steel", 0.4
        if zone:
            return 160.0, "PE", 0.2
        return (110.0 if r.width > 4 else 63.0), "PE", 0.0035
    if util == "heat":
        return (400.0 if r.road_class != "local" else 250.0), "steel", 1.0
    if util == "power":
        return (200.0 if r.road_class == "arterial" else 150.0), "copper cable duct", None
    return (110.0 if r.road_class == "local" else 150.0), "PVC", None


def _gravity_dn(util: str, acc: float, rural: bool) -> tuple[float, str]:
    if util == "rain":
        bins = [(300, 300), (800, 400), (1500, 500), (2500, 600), (4000, 800), (7000, 1000), (12000, 1200)]
        dn = next((d for a, d in bins if acc < a), 1500)
        return float(dn), ("concrete" if dn >= 600 else "HDPE")
    bins = [(600, 300), (2000, 400), (5000, 500), (10000, 600)]
    dn = next((d for a, d in bins if acc < a), 800)
    if rural:
        dn = 200 if acc < 400 else 300
        return float(dn), "PVC"
    return float(dn), ("concrete" if dn >= 600 else "HDPE")


def _merge(lines: list, ids: list[int]) -> tuple[list, list[int]]:
    """Merge ``lines`` through degree-2 nodes; each merged run keeps the id of the line at its middle."""
    merged = list(shapely.get_parts(shapely.line_merge(shapely.MultiLineString(lines))))
    tree = shapely.STRtree(np.array(lines, dtype=object))
    mm = shapely.line_interpolate_point(np.array(merged, dtype=object), 0.5, normalized=True)
    near = tree.query_nearest(mm, all_matches=False)
    of = np.zeros(len(merged), int)
    of[near[0]] = np.asarray(ids)[near[1]]
    return merged, of.tolist()


def _find(parent: dict[int, int], a: int) -> int:
    while parent.get(a, a) != a:
        a = parent[a]
    return a


def _prune(pieces: list, sel: list[int], short: float = 30.0) -> tuple[list, list[int]]:
    """Runs of the selected road pieces (merged through degree-2 nodes, so segments are not cut short where
    two road pieces meet), without runs shorter than a pipe segment that dangle or that close a loop between
    two junctions (two roads crossing close together: the pipe need not follow the short link)."""
    runs, ids = _merge([pieces[i] for i in sel], sel)
    for _ in range(4):
        edges, xy = endpoints_graph(runs)
        lens = np.array([ln.length for ln in runs])
        deg = np.bincount(edges.ravel(), minlength=len(xy))
        drop = (lens < short) & ((deg[edges[:, 0]] == 1) | (deg[edges[:, 1]] == 1))
        cand = (lens < short) & ~drop & (deg[edges[:, 0]] >= 3) & (deg[edges[:, 1]] >= 3)
        if cand.any():  # drop the short links whose ends stay joined without them
            comp = components(len(xy), edges[~drop & ~cand])
            parent: dict[int, int] = {}
            for e in np.flatnonzero(cand)[np.argsort(-lens[cand], kind="stable")]:
                ra, rb = _find(parent, int(comp[edges[e, 0]])), _find(parent, int(comp[edges[e, 1]]))
                if ra == rb:
                    drop[e] = True
                else:
                    parent[max(ra, rb)] = min(ra, rb)
        if not drop.any() or drop.all():
            break
        runs, ids = _merge([r for r, d in zip(runs, drop, strict=True) if not d],
                           [i for i, d in zip(ids, drop, strict=True) if not d])
    return runs, ids


def make_pipes(rng: np.random.Generator, lay: Layout, roads: list[Road]):
    pieces = node_lines([r.line for r in roads])
    lines = np.array(pieces, dtype=object)
    mids = shapely.get_coordinates(shapely.line_interpolate_point(lines, 0.5, normalized=True))
    tree = shapely.STRtree(np.array([r.line for r in roads], dtype=object))
    near = tree.query_nearest(shapely.points(mids), all_matches=False)
    road_of = np.zeros(len(pieces), int)
    road_of[near[0]] = near[1]
    zone = _zone(lay, mids)
    eco = lay.zones["ecological"].buffer(5)
    shapely.prepare(eco)
    crosses_eco = shapely.intersects(eco, lines)
    n_hamlets = max([r.hamlet for r in roads if r.hamlet is not None], default=-1) + 1
    draws = {u: rng.random(n_hamlets) for u in UTILITIES}
    street_draws = {u: rng.random(len(roads)) for u in UTILITIES}

    seg_rows, seg_geoms, node_rows, node_geoms = [], [], [], []
    for util in UTILITIES:
        sel = []
        for i in range(len(pieces)):
            r = roads[road_of[i]]
            d = draws[util][r.hamlet] if r.hamlet is not None else 0.0
            if util in GRAVITY and crosses_eco[i]:
                continue
            if _wanted(util, r, zone[i], d, street_draws[util][road_of[i]]):
                sel.append(i)
        if not sel:
            continue
        dx, dy = OFFSET[util]
        runs, sel = _prune(pieces, sel)
        sel_lines = [shapely.transform(g, lambda c, dx=dx, dy=dy: c + np.array([dx, dy])) for g in runs]
        edges, xy = endpoints_graph(sel_lines)
        lens = np.array([ln.length for ln in sel_lines])
        comp = components(len(xy), edges)
        comp_len = np.bincount(comp[edges[:, 0]], weights=lens, minlength=len(xy))
        if util in GRAVITY:
            keep_edge = comp_len[comp[edges[:, 0]]] >= 150
        else:
            keep_edge = comp[edges[:, 0]] == np.argmax(comp_len)
        sel = [s for s, k in zip(sel, keep_edge, strict=True) if k]
        sel_lines = [ln for ln, k in zip(sel_lines, keep_edge, strict=True) if k]
        edges = edges[keep_edge]
        out = _network(rng, lay, util, sel, sel_lines, edges, xy, comp, roads, road_of, zone)
        if out is None:
            continue
        s_rows, s_geoms, n_rows, n_geoms = out
        seg_rows += s_rows
        seg_geoms += s_geoms
        node_rows += n_rows
        node_geoms += n_geoms
    return seg_rows, seg_geoms, node_rows, node_geoms


def _network(rng, lay, util, sel, sel_lines, edges, xy, comp, roads, road_of, zone):
    gravity = util in GRAVITY
    used = np.unique(edges)
    remap = -np.ones(len(xy), int)
    remap[used] = np.arange(len(used))
    node_xy = [tuple(p) for p in xy[used]]
    graph_node = [True] * len(node_xy)
    node_comp = list(comp[used])
    node_mid = [False] * len(node_xy)
    segs = []  # (a, b, coords, piece index)
    valves_wanted = util in ("water_supply", "gas", "heat")
    for (ga, gb), ln, pi in zip(remap[edges].tolist(), sel_lines, sel, strict=True):
        L = ln.length
        n = max(1, int(np.ceil(L / MAX_SEG_GRAVITY.get(util, MAX_SEG))))
        if valves_wanted and L >= 60:
            n = max(2, n)
        pts, coords = split_line(ln, n)
        ids = [ga]
        for k in range(1, n):
            node_xy.append((float(pts[k, 0]), float(pts[k, 1])))
            graph_node.append(False)
            node_comp.append(node_comp[ga])
            node_mid.append(k == n // 2)
            ids.append(len(node_xy) - 1)
        ids.append(gb)
        for k in range(n):
            segs.append([ids[k], ids[k + 1], coords[k], pi])
    if not segs:
        return None
    nxy = np.array(node_xy)
    ground = lay.terrain.elevation_xy(nxy[:, 0], nxy[:, 1])
    seg_len = np.array([float(np.sum(np.hypot(*np.diff(c, axis=0).T))) for _, _, c, _ in segs])
    sab = np.array([[a, b] for a, b, _, _ in segs])
    n_nodes = len(nxy)
    kind = np.full(n_nodes, "junction", dtype=object)
    invert = np.zeros(n_nodes)
    dn = np.zeros(len(segs))
    material = np.empty(len(segs), dtype=object)
    pressure = [None] * len(segs)
    pfx = PREFIX[util]
    cover = rng.uniform(*COVER[util], n_nodes)

    if gravity:
        ncomp = np.array(node_comp)
        rdist = np.abs(lay.terrain.river_distance(nxy[:, 0], nxy[:, 1]))
        outlets: list[int] = []
        for c in np.unique(ncomp):
            members = np.flatnonzero(ncomp == c)
            clen = seg_len[np.isin(sab[:, 0], members)].sum()
            k = 1 + int(clen / 2500) if util == "rain" else 1
            cand = members[rdist[members] <= rdist[members].min() + 300]
            chosen = [int(cand[np.argmin(rdist[cand])])]
            while len(chosen) < min(k, len(cand)):
                dmin = np.min(np.hypot(nxy[cand, None, 0] - nxy[None, chosen, 0],
                                       nxy[cand, None, 1] - nxy[None, chosen, 1]), axis=1)
                if dmin.max() < 250:
                    break
                chosen.append(int(cand[np.argmax(dmin)]))
            outlets += chosen
        dist = dijkstra(n_nodes, sab, seg_len, outlets)
        # orient every segment downhill in distance-to-outlet; drop exact ties
        flip = dist[sab[:, 0]] < dist[sab[:, 1]]
        sab = np.where(flip[:, None], sab[:, ::-1], sab)
        segs = [[a, b, (c[::-1] if f else c), pi] for (a, b), (_, _, c, pi), f in zip(sab, segs, flip, strict=True)]
        tie = np.abs(dist[sab[:, 0]] - dist[sab[:, 1]]) < 1e-6
        keep = ~tie
        segs = [s for s, k in zip(segs, keep, strict=True) if k]
        sab, seg_len = sab[keep], seg_len[keep]
        dn = dn[keep]
        material = material[keep]
        pressure = [None] * len(segs)
        order = np.argsort(-dist, kind="stable")
        out_edges: list[list[int]] = [[] for _ in range(n_nodes)]
        in_edges: list[list[int]] = [[] for _ in range(n_nodes)]
        for e, (a, b) in enumerate(sab.tolist()):
            out_edges[a].append(e)
            in_edges[b].append(e)
        acc_node = np.zeros(n_nodes)
        acc_e = np.zeros(len(segs))
        for u in order:
            outs = out_edges[u]
            for e in outs:
                acc_e[e] = acc_node[u] / len(outs) + seg_len[e]
                acc_node[sab[e, 1]] += acc_e[e]
        for e in range(len(segs)):
            r = roads[road_of[segs[e][3]]]
            d, m = _gravity_dn(util, acc_e[e], rural=(r.area == "hamlet"))
            dn[e], material[e] = d, m
        slope = np.maximum(0.0008, 0.9 / dn)
        for u in order:
            dmax = max([dn[e] for e in out_edges[u]] + [dn[e] for e in in_edges[u]] + [0.0])
            v = ground[u] - cover[u] - dmax / 1000.0
            for e in in_edges[u]:
                v = min(v, invert[sab[e, 0]] - max(slope[e] * seg_len[e], 0.002))
            invert[u] = v
        kind[:] = "manhole"
        for o in outlets:
            kind[o] = "outfall" if util == "rain" else "treatment_plant"
    else:
        for e, (_a, _b, _c, pi) in enumerate(segs):
            r = roads[road_of[pi]]
            d, m, p = _pressure_attrs(util, r, zone[pi], rng)
            dn[e], material[e], pressure[e] = d, m, p
        dmax = np.zeros(n_nodes)
        np.maximum.at(dmax, sab[:, 0], dn)
        np.maximum.at(dmax, sab[:, 1], dn)
        invert = ground - cover - dmax / 1000.0
        gn = np.array(graph_node)
        mid = np.array(node_mid)
        if util in ("power", "telecom"):
            kind[:] = "manhole"
        else:
            kind[~gn] = "junction"
            if util in ("water_supply", "gas", "heat"):
                kind[mid & ~gn] = "valve"
            if util == "water_supply":
                hyd = ~gn & ~mid & (rng.random(n_nodes) < 0.6)
                kind[hyd] = "hydrant"
        deg = np.zeros(n_nodes, int)
        np.add.at(deg, sab.ravel(), 1)
        kind[gn & (deg >= 3) & (kind != "manhole")] = "junction"
    # rows
    used_nodes = np.unique(sab)
    code_of = {int(n): f"{pfx}{k + 1:06d}" for k, n in enumerate(used_nodes)}
    n_rows, n_geoms = [], []
    for n in used_nodes.tolist():
        n_rows.append({
            "code": code_of[n], "kind": str(kind[n]), "utility": util,
            "ground_elev_m": round(float(ground[n]), 3), "invert_elev_m": round(float(invert[n]), 3),
            "depth_m": round(float(ground[n] - invert[n]), 3),
        })
        n_geoms.append(shapely.Point(nxy[n]))
    s_rows, s_geoms = [], []
    year0 = {"centre": (1995, 2024), "park": (2004, 2024), "": (2006, 2024)}
    for e, (a, b, c, pi) in enumerate(segs):
        D = dn[e] / 1000.0
        lo, hi = year0.get(zone[pi], (2006, 2024))
        s_rows.append({
            "code": f"{pfx}L{e + 1:06d}", "utility": util, "material": str(material[e]),
            "diameter_mm": float(dn[e]),
            "start_node_code": code_of[int(a)], "end_node_code": code_of[int(b)],
            "start_invert_m": round(float(invert[a]), 3), "end_invert_m": round(float(invert[b]), 3),
            "start_depth_m": round(float(ground[a] - invert[a] - D), 3),
            "end_depth_m": round(float(ground[b] - invert[b] - D), 3),
            "gravity": gravity, "pressure_mpa": pressure[e], "owner": OWNER[util],
            "year_laid": int(rng.integers(lo, hi + 1)), "length_m": round(float(seg_len[e]), 2),
        })
        cc = np.asarray(c, dtype=float).copy()
        cc[0], cc[-1] = nxy[a], nxy[b]
        s_geoms.append(shapely.LineString(cc))
    return s_rows, s_geoms, n_rows, n_geoms
