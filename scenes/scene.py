"""``build_scene``: one GLB of a bbox — buildings, pipes, pipe nodes and terrain in a local ENU frame."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenes.dem import DemWindow, dem_path, read_dem
from scenes.frame import LocalFrame
from scenes.glb import LayerMesh, PropertyTable, write_glb
from scenes.ground import ortho_jpeg, terrain_mesh
from scenes.layers import BUILDERS, FEATURE_LAYERS, SCENE_LAYERS, LayerRows, SceneOptions
from scenes.source import read_rows
from twin.errors import InvalidParameter, LimitExceeded
from twin.store import SpatialStore

BBox = tuple[float, float, float, float]


@dataclass
class Scene:
    glb: bytes
    metadata: dict[str, Any]


def parse_scene_layers(raw: str | Sequence[str] | None, allowed: Sequence[str] = SCENE_LAYERS) -> tuple[str, ...]:
    """``buildings,terrain`` → a tuple in the given order; unknown names → InvalidParameter."""
    if raw is None:
        return tuple(allowed)
    names = [n.strip() for n in (raw.split(",") if isinstance(raw, str) else raw) if n.strip()]
    if not names:
        raise InvalidParameter("layers is empty", detail={"scene_layers": list(allowed)})
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise InvalidParameter(f"no 3D layer {', '.join(map(repr, unknown))}",
                               detail={"scene_layers": list(allowed)})
    return tuple(dict.fromkeys(names))


def bbox_area_km2(bbox: BBox) -> float:
    lat = math.radians((bbox[1] + bbox[3]) / 2)
    return (bbox[2] - bbox[0]) * 111.32 * math.cos(lat) * (bbox[3] - bbox[1]) * 110.57


def check_scene_bbox(bbox: BBox, max_area_km2: float) -> None:
    area = bbox_area_km2(bbox)
    if area > max_area_km2:
        raise LimitExceeded(f"bbox covers {area:.1f} km²; a scene may cover at most {max_area_km2} km²",
                            detail={"max_area_km2": max_area_km2, "area_km2": round(area, 3)})


def load_rows(store: SpatialStore, layer: str, bbox: BBox, cap: int) -> LayerRows:
    """The features of ``layer`` touching ``bbox``; more than ``cap`` → LimitExceeded."""
    return read_rows(store, layer, bbox=bbox, cap=cap)


def build_layers(frame: LocalFrame, rows: dict[str, LayerRows], dem: DemWindow,
                 opts: SceneOptions) -> tuple[list[LayerMesh], list[PropertyTable], dict[str, Any]]:
    """Meshes and property tables of the feature layers (tables only for layers with features)."""
    meshes: list[LayerMesh] = []
    tables: list[PropertyTable] = []
    info: dict[str, Any] = {}
    triangles = 0
    for layer, r in rows.items():
        if len(r) == 0:
            info[layer] = {"features": 0}
            continue
        built = BUILDERS[layer](frame, r, dem, opts)
        built.mesh.table = len(tables)
        tables.append(built.table)
        meshes.append(built.mesh)
        triangles += built.mesh.part.triangles
        if triangles > opts.max_triangles:
            raise LimitExceeded(f"the scene would have more than {opts.max_triangles} triangles",
                                detail={"max_triangles": opts.max_triangles})
        info[layer] = {"features": len(r), "triangles": built.mesh.part.triangles, "sources": built.sources}
    return meshes, tables, info


def build_scene(store: SpatialStore, bbox: BBox, layers: Sequence[str], *, raster_dir: Path | None,
                opts: SceneOptions, max_area_km2: float, texture: str | None = None) -> Scene:
    """The GLB of ``bbox`` (lon/lat) with ``layers``; see docs/scenes.md for the frame and metadata."""
    if texture not in (None, "none", "ortho"):
        raise InvalidParameter(f"texture must be 'ortho' or 'none', not {texture!r}")
    check_scene_bbox(bbox, max_area_km2)
    frame = LocalFrame((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, 0.0)
    dpath = dem_path(raster_dir)
    dem = read_dem(dpath, bbox)
    rows = {n: load_rows(store, n, bbox, opts.max_features) for n in layers if n in FEATURE_LAYERS}
    meshes, tables, info = build_layers(frame, rows, dem, opts)
    notes = []
    if dem.empty:
        notes.append("the DEM does not cover this bbox: ground heights fall back to attributes, then 0 m")
    if "terrain" in layers:
        textured = texture == "ortho"
        tex = ortho_jpeg(Path(raster_dir) / "ortho.tif", bbox) if textured and raster_dir else None
        if textured and tex is None:
            notes.append("no orthophoto: terrain is untextured")
        part = terrain_mesh(frame, bbox, dem, opts.terrain_cells, tex is not None)
        meshes.append(LayerMesh("terrain", part, (0.55, 0.6, 0.45, 1.0), None, tex))
        info["terrain"] = {"triangles": part.triangles, "source": "dem" if part.triangles else "none",
                           "textured": tex is not None}
    meta = {
        "bbox": list(bbox), "layers": list(layers), "frame": frame.describe(), "content": info,
        "defaults": {"storey_height_m": opts.storey_height_m, "default_height_m": opts.default_height_m,
                     "default_cover_m": opts.default_cover_m, "default_diameter_mm": opts.default_diameter_mm},
        "picking": "EXT_mesh_features _FEATURE_ID_0 → EXT_structural_metadata table row (layer, id) → "
                   "/collections/{layer}/items/{id}",
        "notes": notes,
    }
    return Scene(write_glb(meshes, tables, {"twin": meta}), meta)
