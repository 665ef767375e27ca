"""How each layer becomes 3D: which columns are read, the fallbacks, the mesh, the property table.

Fallbacks (recorded per feature in the property table and counted in the scene metadata):

* building height: ``height_m`` if > 0 (``attribute``), else ``floors`` × storey height
  (``floors``), else the default height (``default``); the base is the lowest DEM
  height under the footprint (``dem``), else ``ground_elev_m`` (``attribute``), else 0 m
  (``default``).
* pipe axis at each end: invert + radius (``invert``), else ground − depth − radius
  (``depth``; depth is ground to pipe top), else ground − default cover − radius
  (``default``); ground is the DEM, else 0 m.
* pipe node: a vertical cylinder from its invert (same fallbacks) up to the ground.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import shapely

from scenes.dem import DemWindow
from scenes.frame import LocalFrame
from scenes.glb import LayerMesh, PropertyTable
from scenes.meshes import cylinders, extrude_footprints, tubes
from twin.settings import TwinSettings

#: The layers a scene can hold ("terrain" is the DEM, not a catalogue layer).
SCENE_LAYERS = ("buildings", "pipelines", "pipe_nodes", "terrain")
FEATURE_LAYERS = ("buildings", "pipelines", "pipe_nodes")

#: Colours by utility, after CJJ 61 / GB 50289 practice (water blue, drainage brown, gas pink, …).
UTILITY_RGBA: dict[str, tuple[int, int, int, int]] = {
    "water_supply": (0, 102, 204, 255), "rain": (120, 80, 40, 255), "sewage": (153, 102, 51, 255),
    "gas": (230, 60, 160, 255), "heat": (255, 140, 0, 255), "power": (220, 30, 30, 255),
    "telecom": (40, 170, 60, 255),
}
OTHER_RGBA = (128, 128, 128, 255)
NODE_RADIUS_M = {"manhole": 0.6, "valve": 0.25, "hydrant": 0.2, "junction": 0.3}

#: Columns read per layer beyond ``id`` and the geometry.
READ_COLUMNS = {
    "buildings": ("code", "use", "floors", "height_m", "ground_elev_m"),
    "pipelines": ("code", "utility", "material", "diameter_mm", "start_invert_m", "end_invert_m",
                  "start_depth_m", "end_depth_m"),
    "pipe_nodes": ("code", "kind", "utility", "ground_elev_m", "invert_elev_m", "depth_m"),
}


@dataclass(frozen=True)
class SceneOptions:
    storey_height_m: float = 3.0
    default_height_m: float = 3.0
    default_cover_m: float = 1.2
    default_diameter_mm: float = 300.0
    terrain_cells: int = 160
    max_features: int = 100_000
    max_triangles: int = 8_000_000
    tube_sides: int = 8

    @classmethod
    def from_settings(cls, s: TwinSettings) -> SceneOptions:
        return cls(s.scene_storey_height_m, s.scene_default_height_m, s.scene_default_cover_m,
                   s.scene_default_diameter_mm, s.scene_terrain_cells, s.scene_max_features,
                   s.scene_max_triangles)


@dataclass
class LayerRows:
    """Rows of one layer: ids, column arrays (object dtype, None = missing), lon/lat geometries."""

    layer: str
    ids: np.ndarray
    columns: dict[str, np.ndarray]
    geoms: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, mask: np.ndarray) -> LayerRows:
        return LayerRows(self.layer, self.ids[mask], {k: v[mask] for k, v in self.columns.items()},
                         self.geoms[mask])


@dataclass
class Built:
    mesh: LayerMesh
    table: PropertyTable
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    #: per feature: (minx, miny, maxx, maxy) lon/lat, zmin, zmax (m) — for tile bounding volumes
    zmin: np.ndarray | None = None
    zmax: np.ndarray | None = None


def _num(col: np.ndarray) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in col], float)


def _pick(*options: tuple[np.ndarray, str]) -> tuple[np.ndarray, np.ndarray]:
    """First finite value of the options, with the name of the option used."""
    value = np.full(len(options[0][0]), np.nan)
    source = np.full(len(value), options[-1][1], dtype=object)
    for arr, name in reversed(options):
        ok = np.isfinite(arr)
        value[ok] = arr[ok]
        source[ok] = name
    return value, source


def building_heights(rows: LayerRows, dem: DemWindow, opts: SceneOptions):  # noqa: ANN201
    """(base, top, base source, height source) per building, in metres."""
    coords, which = shapely.get_coordinates(rows.geoms, return_index=True)
    ground = dem.sample(coords[:, 0], coords[:, 1])
    lowest = np.full(len(rows), np.inf)
    np.minimum.at(lowest, which, np.where(np.isnan(ground), np.inf, ground))
    lowest[~np.isfinite(lowest)] = np.nan
    attr_ground = _num(rows.columns["ground_elev_m"])
    base, base_src = _pick((lowest, "dem"), (attr_ground, "attribute"), (np.zeros(len(rows)), "default"))
    h = _num(rows.columns["height_m"])
    h[h <= 0] = np.nan
    floors = _num(rows.columns["floors"])
    by_floors = np.where(floors > 0, floors * opts.storey_height_m, np.nan)
    height, h_src = _pick((h, "attribute"), (by_floors, "floors"),
                          (np.full(len(rows), opts.default_height_m), "default"))
    return base, base + height, base_src, h_src


def build_buildings(frame: LocalFrame, rows: LayerRows, dem: DemWindow, opts: SceneOptions) -> Built:
    base, top, base_src, h_src = building_heights(rows, dem, opts)
    part = extrude_footprints(frame, rows.geoms, base, top, np.arange(len(rows)))
    table = PropertyTable("buildings", {
        "layer": ["buildings"] * len(rows),
        "id": [int(i) for i in rows.ids],
        **{k: list(rows.columns[k]) for k in ("code", "use", "floors")},
        "height_m": [round(float(t - b), 3) for b, t in zip(base, top, strict=True)],
        "base_m": [round(float(b), 3) for b in base],
        "height_source": list(h_src),
        "base_source": list(base_src),
    }, "Buildings extruded from footprints; id → /collections/buildings/items/{id}")
    return Built(LayerMesh("buildings", part, (0.87, 0.85, 0.82, 1.0)), table,
                 {"height": dict(Counter(h_src)), "base": dict(Counter(base_src))}, base, top)


def _utility_colors(util: np.ndarray) -> np.ndarray:
    return np.array([UTILITY_RGBA.get(str(u), OTHER_RGBA) for u in util], np.uint8).reshape(-1, 4)


def pipe_axis_heights(rows: LayerRows, dem: DemWindow, opts: SceneOptions):  # noqa: ANN201
    """Axis heights (m) at both ends, the radius (m) and the source of each end's height."""
    diam = _num(rows.columns["diameter_mm"])
    diam[~(diam > 0)] = opts.default_diameter_mm
    r = diam / 2000.0
    starts = shapely.get_point(rows.geoms, 0)
    ends = shapely.get_point(rows.geoms, -1)
    out = []
    for pts, end in ((starts, "start"), (ends, "end")):
        g = dem.sample(shapely.get_x(pts), shapely.get_y(pts))
        g = np.where(np.isnan(g), 0.0, g)
        inv = _num(rows.columns[f"{end}_invert_m"]) + r
        dep = g - _num(rows.columns[f"{end}_depth_m"]) - r
        z, src = _pick((inv, "invert"), (dep, "depth"), (g - opts.default_cover_m - r, "default"))
        out.append((z, src))
    return out[0][0], out[1][0], r, out[0][1], out[1][1]


def build_pipelines(frame: LocalFrame, rows: LayerRows, dem: DemWindow, opts: SceneOptions) -> Built:
    z0, z1, r, s0, s1 = pipe_axis_heights(rows, dem, opts)
    coords, line = shapely.get_coordinates(rows.geoms, return_index=True)
    flat = frame.to_enu(coords[:, 0], coords[:, 1], np.zeros(len(coords)))
    step = np.r_[0.0, np.linalg.norm(np.diff(flat[:, :2], axis=0), axis=1)]
    step[np.r_[True, line[1:] != line[:-1]]] = 0.0
    along = np.cumsum(step)
    first = np.searchsorted(line, np.arange(len(rows)))
    along -= along[first][line]
    total = np.zeros(len(rows))
    np.maximum.at(total, line, along)
    frac = np.where(total[line] > 0, along / np.where(total[line] > 0, total[line], 1), 0.0)
    h = z0[line] + (z1 - z0)[line] * frac
    axis = frame.to_enu(coords[:, 0], coords[:, 1], h)
    util = rows.columns["utility"]
    part = tubes(axis, line, r, np.arange(len(rows)), _utility_colors(util), opts.tube_sides)
    src = np.where(s0 == s1, s0, s0 + "/" + s1)
    table = PropertyTable("pipelines", {
        "layer": ["pipelines"] * len(rows),
        "id": [int(i) for i in rows.ids],
        **{k: list(rows.columns[k]) for k in ("code", "utility", "material", "diameter_mm")},
        "start_axis_m": [round(float(v), 3) for v in z0],
        "end_axis_m": [round(float(v), 3) for v in z1],
        "elevation_source": list(src),
    }, "Pipe segments as tubes at their depth; axis = invert + radius")
    src_count = Counter(list(s0) + list(s1))
    zmin = np.minimum(z0, z1) - r
    zmax = np.maximum(z0, z1) + r
    return Built(LayerMesh("pipelines", part), table, {"elevation": dict(src_count)}, zmin, zmax)


def build_pipe_nodes(frame: LocalFrame, rows: LayerRows, dem: DemWindow, opts: SceneOptions) -> Built:
    x, y = shapely.get_x(rows.geoms), shapely.get_y(rows.geoms)
    g_dem = dem.sample(x, y)
    ground, g_src = _pick((g_dem, "dem"), (_num(rows.columns["ground_elev_m"]), "attribute"),
                          (np.zeros(len(rows)), "default"))
    bottom, b_src = _pick((_num(rows.columns["invert_elev_m"]), "invert"),
                          (ground - _num(rows.columns["depth_m"]), "depth"),
                          (ground - opts.default_cover_m, "default"))
    bottom = np.minimum(bottom, ground - 0.05)
    radius = np.array([NODE_RADIUS_M.get(str(k), 0.3) for k in rows.columns["kind"]])
    part = cylinders(frame.to_enu(x, y, bottom), frame.to_enu(x, y, ground), radius, np.arange(len(rows)),
                     _utility_colors(rows.columns["utility"]))
    table = PropertyTable("pipe_nodes", {
        "layer": ["pipe_nodes"] * len(rows),
        "id": [int(i) for i in rows.ids],
        **{k: list(rows.columns[k]) for k in ("code", "kind", "utility")},
        "ground_m": [round(float(v), 3) for v in ground],
        "bottom_m": [round(float(v), 3) for v in bottom],
        "elevation_source": list(b_src),
    }, "Manholes, valves and other pipe nodes as vertical cylinders from invert to ground")
    return Built(LayerMesh("pipe_nodes", part), table,
                 {"ground": dict(Counter(g_src)), "bottom": dict(Counter(b_src))}, bottom, ground)


BUILDERS = {"buildings": build_buildings, "pipelines": build_pipelines, "pipe_nodes": build_pipe_nodes}
