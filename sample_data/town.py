"""``generate_town``: the whole deterministic sample town, and ``build_sample_town`` to load it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from sample_data import buildings as bmod
from sample_data import devices as dmod
from sample_data import evaluation, events, farmland, grids, pipes, planning, sites
from sample_data.geo import Frame
from sample_data.layout import Layout, make_layout
from sample_data.names import TOWN_CODE, TOWN_NAME
from sample_data.roads import make_roads, road_rows
from sample_data.villages import make_villages, place_hamlets

DEFAULT_SEED = 20261123
LAYER_ORDER = ("grids", "evaluation_grids", "evaluation_points", "buildings", "pipelines", "pipe_nodes", "farmland",
               "zones", "control_lines", "devices", "cameras", "events", "roads", "construction_sites")


@dataclass
class Town:
    seed: int
    scale: float
    layers: dict[str, list[dict]]
    bounds: tuple[float, float, float, float]  # lon/lat
    origin: tuple[float, float]  # lon/lat of the local frame origin
    frame: Frame = field(repr=False)
    layout: Layout = field(repr=False)
    local: dict[str, Any] = field(default_factory=dict, repr=False)  # local-metre geometries for the rasters
    as_of: dt.datetime = events.AS_OF

    def elevation(self, lon, lat):
        """Ground elevation (m, 1985 datum) at lon/lat; vectorised."""
        x, y = self.frame.lonlat_to_xy(lon, lat)
        return self.layout.terrain.elevation_xy(x, y)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.layers.items()}


def _rng(seed: int, k: int) -> np.random.Generator:
    return np.random.default_rng([seed, k])


def _attach(rows: list[dict], geoms, frame: Frame) -> list[dict]:
    ll = frame.to_lonlat(np.asarray(list(geoms), dtype=object)) if len(rows) else []
    for r, g in zip(rows, ll, strict=True):
        if g.geom_type == "MultiPolygon" and not g.is_valid:  # a sliver folded by the reprojection
            g = _mp(g, min_area=0.0)
        r["geom"] = g
    return rows


def _mp(g, min_area: float = 0.01):
    """A valid MultiPolygon of the polygonal parts of ``g`` (slivers under ``min_area`` dropped)."""
    if not g.is_valid:
        g = shapely.make_valid(g)
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon") and p.area > min_area]
    if len(parts) > 1 or (parts and parts[0].geom_type == "MultiPolygon"):
        u = shapely.union_all(parts)
        parts = [p for p in shapely.get_parts(u) if p.geom_type == "Polygon" and p.area > min_area]
    return shapely.MultiPolygon(parts)


def generate_town(seed: int = DEFAULT_SEED, scale: float = 1.0,
                  origin: tuple[float, float] | None = None) -> Town:
    """The town of ``seed`` and ``scale``; ``origin`` (lon, lat) moves its local frame (default 120.9, 31.7)."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    frame = Frame(*origin) if origin is not None else Frame()
    lay = make_layout(_rng(seed, 1), scale)
    villages = make_villages(_rng(seed, 2), lay)
    n_bld = max(20, int(round(20000 * scale)))
    targets = {0: int(n_bld * 0.06), 1: int(n_bld * 0.08), 2: int(n_bld * 0.02)}
    targets[3] = n_bld - sum(targets.values())
    place_hamlets(_rng(seed, 3), lay, villages, targets[3])
    roads = make_roads(_rng(seed, 4), lay, villages)
    site_rows, site_geoms = sites.make_sites(_rng(seed, 5), lay, roads)

    # buildings
    brng = _rng(seed, 6)
    cand = bmod.candidates(brng, roads)
    sel = bmod.select(brng, lay, roads, cand, site_geoms, targets)
    vgeoms = np.array([v.poly for v in villages], dtype=object)
    bcen = shapely.get_coordinates(shapely.centroid(sel.polys))
    from sample_data.places import locate
    vcode_idx = {v.code: v.index for v in villages}
    vidx = np.array([vcode_idx.get(c, 0) if c else 0 for c in locate(bcen, vgeoms, [v.code for v in villages])])
    hamlet_of_road: dict[int, tuple[int, int]] = {}
    flat = [(v.index, h.group) for v in villages for h in v.hamlets]
    for i, r in enumerate(roads):
        if r.hamlet is not None:
            hamlet_of_road[i] = flat[r.hamlet]
    b_rows = bmod.attributes(brng, sel, roads, villages, vidx, hamlet_of_road)
    b_rows = [{**r, "ground_elev_m": round(float(z), 3)} for r, z in
              zip(b_rows, lay.terrain.elevation_xy(bcen[:, 0], bcen[:, 1]), strict=True)]

    # grids
    grng = _rng(seed, 7)
    units = grids.make_unit_grids(grng, lay, villages)
    ugeoms = np.array([u.geom for u in units], dtype=object)
    ucodes = [u.code for u in units]
    bgrid = locate(bcen, ugeoms, ucodes)
    for r, g in zip(b_rows, bgrid, strict=True):
        r["grid_code"] = g
    hh = {}
    for r in b_rows:
        if r["households"]:
            hh[r["grid_code"]] = hh.get(r["grid_code"], 0) + r["households"]
    grid_rows, grid_geoms = [], []
    vpop: dict[int, int] = {}
    for u in units:
        pop = int(round(hh.get(u.code, 0) * 2.7))
        vpop[u.village] = vpop.get(u.village, 0) + pop
    grid_rows.append({"code": TOWN_CODE, "name": TOWN_NAME, "level": "town", "parent_code": None,
                      "village_code": None, "area_m2": round(float(lay.town.area), 1),
                      "population": int(sum(vpop.values())), "grid_worker": "镇网格化管理中心"})
    grid_geoms.append(_mp(lay.town))
    for v in villages:
        grid_rows.append({"code": v.code, "name": v.name, "level": "village", "parent_code": TOWN_CODE,
                          "village_code": v.code, "area_m2": round(float(v.poly.area), 1),
                          "population": vpop.get(v.index, 0), "grid_worker": f"{v.name}网格长"})
        grid_geoms.append(_mp(v.poly))
    for u in units:
        v = villages[u.village]
        grid_rows.append({"code": u.code, "name": u.name, "level": "unit", "parent_code": v.code,
                          "village_code": v.code, "area_m2": round(float(u.geom.area), 1),
                          "population": int(round(hh.get(u.code, 0) * 2.7)),
                          "grid_worker": f"专职网格员-{u.code[-6:]}"})
        grid_geoms.append(_mp(u.geom))
    groups = grids.evaluation_groups(grng, units)
    eg_rows, eg_geoms = [], []
    per_v: dict[int, int] = {}
    for g in groups:
        v = villages[units[g[0]].village]
        per_v[v.index] = per_v.get(v.index, 0) + 1
        geom = _mp(shapely.union_all([units[i].geom for i in g]))
        eg_rows.append({"code": f"{v.code}PJ{per_v[v.index]:02d}", "name": f"{v.name}评价网格{per_v[v.index]}",
                        "village_code": v.code, "unit_grid_codes": [units[i].code for i in g],
                        "area_m2": round(float(geom.area), 1)})
        eg_geoms.append(geom)

    # farmland and planning
    f_rows, f_geoms = farmland.make_farmland(_rng(seed, 8), lay, villages, roads, sel.polys, site_geoms)
    z_rows, z_geoms = planning.zones(lay)
    perm = np.array([g for g, r in zip(f_geoms, f_rows, strict=True) if r["is_permanent_basic"]], dtype=object)
    c_rows, c_geoms = planning.control_lines(lay, perm)

    # pipes
    s_rows, s_geoms, n_rows, n_geoms = pipes.make_pipes(_rng(seed, 9), lay, roads)

    # roads rows
    r_rows, r_geoms = road_rows(_rng(seed, 10), roads)

    # devices, cameras, events, evaluation points
    nxy = shapely.get_coordinates(np.array(n_geoms, dtype=object)) if n_geoms else np.zeros((0, 2))
    nutil = np.array([r["utility"] for r in n_rows])
    ground = np.array([r["ground_elev_m"] for r in n_rows])
    rain = np.flatnonzero(nutil == "rain")
    rain_low = nxy[rain[np.argsort(ground[rain])[: max(5, len(rain) // 10)]]] if len(rain) else np.zeros((0, 2))
    uses = np.array([r["use"] for r in b_rows])
    kind = sel.kind
    centre_lines = np.array([r.line for r in roads if r.area == "centre"], dtype=object)
    cj = shapely.get_coordinates(shapely.boundary(centre_lines)) if len(centre_lines) else np.zeros((0, 2))
    ent = []
    for r in roads:
        if r.name.endswith("进村路"):
            ent.append(r.line.coords[0])
    ctx = {
        "sites": np.asarray(site_geoms, dtype=object),
        "bldg_centre": sel.polys[(kind <= 2) & (uses != "residential") | (kind == 1)],
        "bldg_commercial": sel.polys[uses == "commercial"] if (uses == "commercial").any() else sel.polys,
        "bldg_all": sel.polys,
        "bldg_hamlet": sel.polys[kind == 3],
        "arterials": np.array([r.line for r in roads if r.road_class == "arterial"], dtype=object),
        "centre_roads": centre_lines if len(centre_lines) else np.array([r.line for r in roads], dtype=object),
        "park_roads": np.array([r.line for r in roads if r.area == "park"], dtype=object),
        "major_roads": np.array([r.line for r in roads if r.road_class in ("arterial", "collector")], dtype=object),
        "event_roads": np.array([r.line for r in roads if r.area in ("centre", "park") or r.road_class != "local"],
                                dtype=object),
        "rain_low_nodes": rain_low,
        "gas_nodes": nxy[nutil == "gas"],
        "power_nodes": nxy[nutil == "power"],
        "water_nodes": nxy[nutil == "water_supply"] if (nutil == "water_supply").any() else nxy,
        "all_nodes": nxy,
        "hamlet_centres": np.array([(h.cx, h.cy) for v in villages for h in v.hamlets]).reshape(-1, 2),
        "hamlet_entrances": np.array(ent).reshape(-1, 2),
        "centre_junctions": cj,
        "farmland": np.asarray(f_geoms, dtype=object),
    }
    d_rows, d_xy = dmod.make_devices(_rng(seed, 11), lay, ctx)
    for r, g in zip(d_rows, locate(d_xy, ugeoms, ucodes), strict=True):
        r["grid_code"] = g
    cam_rows, cam_xy = dmod.make_cameras(_rng(seed, 12), lay, ctx)
    for r, g in zip(cam_rows, locate(cam_xy, ugeoms, ucodes), strict=True):
        r["grid_code"] = g
    e_rows, e_xy = events.make_events(_rng(seed, 13), lay, ctx, d_rows, d_xy)
    for r, g in zip(e_rows, locate(e_xy, ugeoms, ucodes), strict=True):
        r["grid_code"] = g
    p_rows, p_xy = evaluation.make_points(_rng(seed, 14), lay, ctx, np.array(eg_geoms, dtype=object),
                                          [r["code"] for r in eg_rows])

    local = {
        "buildings": sel.polys, "farmland": np.asarray(f_geoms, dtype=object), "roads": roads,
        "sites": np.asarray(site_geoms, dtype=object), "building_use": uses,
        "crops": [r["crop"] for r in f_rows], "hamlets": [h.envelope for v in villages for h in v.hamlets],
    }
    layers = {
        "grids": _attach(grid_rows, grid_geoms, frame),
        "evaluation_grids": _attach(eg_rows, eg_geoms, frame),
        "evaluation_points": _attach(p_rows, shapely.points(p_xy) if len(p_xy) else [], frame),
        "buildings": _attach(b_rows, [_mp(g) for g in sel.polys], frame),
        "pipelines": _attach(s_rows, s_geoms, frame),
        "pipe_nodes": _attach(n_rows, n_geoms, frame),
        "farmland": _attach(f_rows, [_mp(g) for g in f_geoms], frame),
        "zones": _attach(z_rows, z_geoms, frame),
        "control_lines": _attach(c_rows, c_geoms, frame),
        "devices": _attach(d_rows, shapely.points(d_xy), frame),
        "cameras": _attach(cam_rows, shapely.points(cam_xy), frame),
        "events": _attach(e_rows, shapely.points(e_xy), frame),
        "roads": _attach(r_rows, r_geoms, frame),
        "construction_sites": _attach(site_rows, [_mp(g) for g in site_geoms], frame),
    }
    tb = frame.to_lonlat(np.array([lay.town], dtype=object))[0].bounds
    return Town(seed=seed, scale=scale, layers=layers, bounds=tuple(float(b) for b in tb),
                origin=(frame.lon0, frame.lat0), frame=frame, layout=lay, local=local)


def build_sample_town(store, raster_dir: Path, seed: int = DEFAULT_SEED, scale: float = 1.0,
                      jobs: int = 2) -> dict[str, int]:
    """Generate the town, replace every layer in ``store`` in one transaction, write the rasters.

    Above scale 10 the town is built as a city of districts, streamed one at a time
    (:func:`sample_data.city.build_city`, ``jobs`` districts generated at once, with a progress
    bar on stderr).
    """
    from sample_data.city import DISTRICT_SCALE, build_city
    from sample_data.rasters import write_rasters

    if scale > DISTRICT_SCALE:
        res = build_city(store, Path(raster_dir), seed=seed, scale=scale, jobs=jobs)
        return {k: v for k, v in res.items() if k in LAYER_ORDER}

    town = generate_town(seed=seed, scale=scale)
    counts: dict[str, int] = {}
    with store.engine.begin() as conn:
        for layer in LAYER_ORDER:
            counts[layer] = store.write_features(layer, town.layers[layer], mode="replace", conn=conn)
        from sample_data.event_history import write_event_history

        write_event_history(conn, events.AS_OF)  # the closed-loop steps behind each event's status
    write_rasters(town, Path(raster_dir))
    return counts
