"""3D Tiles 1.1 tilesets of the feature layers: a quadtree index and the content of each tile.

The index holds every feature of the requested layers with its lon/lat box, its
height range (the same fallbacks as the scene, so bounding volumes are exact) and a
size in metres (the larger of its horizontal diagonal and its height). The quadtree
over the layers' extent keeps, in each tile, at most ``cap`` features — the largest
ones — and passes the rest down to the four children by centre point. So coarse
tiles hold the big buildings and long pipes, and a close-up adds the rest
(``refine: ADD``).

* ``boundingVolume.region``: the tile's own features and its children's, with their
  own lowest and highest heights — tight per tile, not the dataset's range.
* ``geometricError``: the size of the largest feature that the tile's descendants
  add (0 at leaves); a client refines when that feature would exceed its
  screen-space error (16 px by default in CesiumJS).
* All content shares one ENU frame at the extent's centre; the root ``transform``
  places it on the globe (see :mod:`scenes.frame`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from scenes.dem import DemWindow
from scenes.frame import LocalFrame
from scenes.layers import (
    FEATURE_LAYERS,
    LayerRows,
    SceneOptions,
    building_heights,
    pipe_axis_heights,
)
from scenes.layers import _num as _numbers

BBox = tuple[float, float, float, float]
MAX_DEPTH = 20


@dataclass
class FeatureIndex:
    """Every feature of the tileset's layers (parallel arrays)."""

    layer: np.ndarray  # object: layer id
    ids: np.ndarray  # int64 feature id
    box: np.ndarray  # (N, 4) lon/lat minx, miny, maxx, maxy
    zmin: np.ndarray
    zmax: np.ndarray
    size: np.ndarray  # metres

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Tile:
    z: int
    x: int
    y: int
    bounds: BBox  # the quadtree cell, lon/lat
    content: np.ndarray  # indices into the FeatureIndex
    children: list[Tile] = field(default_factory=list)
    region: tuple[float, float, float, float, float, float] | None = None  # lon/lat degrees + heights
    geometric_error: float = 0.0

    @property
    def address(self) -> str:
        return f"{self.z}/{self.x}/{self.y}"

    def walk(self) -> Iterator[Tile]:
        yield self
        for c in self.children:
            yield from c.walk()


def feature_extents(rows: LayerRows, dem: DemWindow, opts: SceneOptions) -> tuple[np.ndarray, np.ndarray]:
    """(zmin, zmax) per feature, with the same fallbacks the meshes use."""
    if rows.layer == "buildings":
        base, top, _, _ = building_heights(rows, dem, opts)
        return base, top
    if rows.layer == "pipelines":
        z0, z1, r, _, _ = pipe_axis_heights(rows, dem, opts)
        return np.minimum(z0, z1) - r, np.maximum(z0, z1) + r
    x, y = shapely.get_x(rows.geoms), shapely.get_y(rows.geoms)
    g = dem.sample(x, y)
    g = np.where(np.isnan(g), _numbers(rows.columns["ground_elev_m"]), g)
    g = np.where(np.isnan(g), 0.0, g)
    bottom = _numbers(rows.columns["invert_elev_m"])
    bottom = np.where(np.isnan(bottom), g - _numbers(rows.columns["depth_m"]), bottom)
    bottom = np.where(np.isnan(bottom), g - opts.default_cover_m, bottom)
    return np.minimum(bottom, g - 0.05), g


def build_index(rows_by_layer: dict[str, LayerRows], dem: DemWindow, opts: SceneOptions) -> FeatureIndex:
    parts: list[tuple[Any, ...]] = []
    for layer, rows in rows_by_layer.items():
        if len(rows) == 0:
            continue
        box = shapely.bounds(rows.geoms)
        if layer != "buildings":  # tubes and cylinders reach past their axis by their radius: pad 1 m
            pad_lat = 1.0 / 110_570
            pad_lon = pad_lat / np.cos(np.radians(box[:, 1]))
            box = box + np.stack([-pad_lon, np.full(len(box), -pad_lat), pad_lon,
                                  np.full(len(box), pad_lat)], axis=1)
        zmin, zmax = feature_extents(rows, dem, opts)
        lat = np.radians((box[:, 1] + box[:, 3]) / 2)
        dx = (box[:, 2] - box[:, 0]) * 111_320 * np.cos(lat)
        dy = (box[:, 3] - box[:, 1]) * 110_570
        size = np.maximum(np.hypot(dx, dy), zmax - zmin)
        parts.append((np.full(len(rows), layer, dtype=object), rows.ids, box, zmin, zmax, size))
    if not parts:
        return FeatureIndex(np.zeros(0, object), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0),
                            np.zeros(0), np.zeros(0))
    cols = list(zip(*parts, strict=True))
    return FeatureIndex(*(np.concatenate(c) for c in cols))


def square_root_bounds(extent: BBox) -> BBox:
    """A square (in metres) cell around the extent, so the quadtree's cells stay square-ish."""
    cx, cy = (extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2
    k = math.cos(math.radians(cy))
    half = max((extent[2] - extent[0]) * k, extent[3] - extent[1]) / 2 * 1.0001 + 1e-6
    return (cx - half / k, cy - half, cx + half / k, cy + half)


def build_tree(index: FeatureIndex, root_bounds: BBox, cap: int) -> Tile:
    """The quadtree: each tile keeps its ``cap`` largest features, children get the rest."""
    cx = (index.box[:, 0] + index.box[:, 2]) / 2
    cy = (index.box[:, 1] + index.box[:, 3]) / 2
    order = np.argsort(-index.size, kind="stable")  # largest first, everywhere

    def make(z: int, x: int, y: int, bounds: BBox, members: np.ndarray) -> Tile:
        if len(members) <= cap or z >= MAX_DEPTH:
            return Tile(z, x, y, bounds, members)
        keep, rest = members[:cap], members[cap:]
        tile = Tile(z, x, y, bounds, keep)
        mx, my = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
        east = cx[rest] >= mx
        north = cy[rest] >= my
        for dx in (0, 1):
            for dy in (0, 1):  # y counts from the north, as in web tiles
                sel = rest[(east == bool(dx)) & (north == (dy == 0))]
                if len(sel) == 0:
                    continue
                b = (bounds[0] if dx == 0 else mx, my if dy == 0 else bounds[1],
                     mx if dx == 0 else bounds[2], bounds[3] if dy == 0 else my)
                tile.children.append(make(z + 1, 2 * x + dx, 2 * y + dy, b, sel))
        return tile

    root = make(0, 0, 0, root_bounds, order)
    _finish(root, index)
    return root


def _finish(tile: Tile, index: FeatureIndex) -> None:
    """Regions (own content ∪ children) and geometric errors, bottom-up."""
    boxes, zlo, zhi, below = [], [], [], 0.0
    for c in tile.children:
        _finish(c, index)
        assert c.region is not None
        boxes.append(np.array([c.region[:4]]))
        zlo.append(c.region[4])
        zhi.append(c.region[5])
        own_max = float(index.size[c.content].max()) if len(c.content) else 0.0
        below = max(below, own_max, c.geometric_error)
    if len(tile.content):
        boxes.append(index.box[tile.content])
        zlo.append(float(index.zmin[tile.content].min()))
        zhi.append(float(index.zmax[tile.content].max()))
    b = np.concatenate(boxes) if boxes else np.array([tile.bounds])
    tile.region = (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()),
                   min(zlo) if zlo else 0.0, max(zhi) if zhi else 0.0)
    tile.geometric_error = below


def tileset_json(root: Tile, index: FeatureIndex, frame: LocalFrame, content_uri: str,
                 layers: Sequence[str], extras: dict[str, Any]) -> dict[str, Any]:
    """The tileset document; ``content_uri`` has ``{z}``, ``{x}``, ``{y}`` placeholders."""

    def node(t: Tile) -> dict[str, Any]:
        assert t.region is not None
        w, s, e, n, lo, hi = t.region
        out: dict[str, Any] = {
            "boundingVolume": {"region": [math.radians(w), math.radians(s), math.radians(e), math.radians(n),
                                          lo, hi]},
            "geometricError": round(t.geometric_error, 3),
            "refine": "ADD",
        }
        if len(t.content):
            out["content"] = {"uri": content_uri.format(z=t.z, x=t.x, y=t.y)}
        if t.children:
            out["children"] = [node(c) for c in t.children]
        return out

    root_node = node(root)
    root_node["transform"] = frame.ecef_transform
    top_error = max(root.geometric_error, float(index.size[root.content].max()) if len(root.content) else 0.0)
    return {
        "asset": {"version": "1.1", "generator": "twin scenes", "extras": extras},
        "geometricError": round(top_error * 2 + 1, 3),
        "extras": {"layers": list(layers)},
        "root": root_node,
    }


def find_tile(root: Tile, z: int, x: int, y: int) -> Tile | None:
    """The tile at quadtree address z/x/y, or None."""
    t = root
    for level in range(1, z + 1):
        shift = z - level
        cx, cy = x >> shift, y >> shift
        nxt = next((c for c in t.children if c.x == cx and c.y == cy), None)
        if nxt is None:
            return None
        t = nxt
    return t if (t.z, t.x, t.y) == (z, x, y) else None


def content_bbox(tile: Tile, index: FeatureIndex) -> BBox:
    b = index.box[tile.content]
    return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))


__all__ = ["FEATURE_LAYERS", "FeatureIndex", "Tile", "build_index", "build_tree", "content_bbox", "find_tile",
           "square_root_bounds", "tileset_json"]
