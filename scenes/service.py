"""The scene service: tileset documents and tile content of one store, cached on data versions.

This is what the HTTP router and ``twin scenes export`` call; it knows no HTTP.
Content GLBs are cached in the same cache classes as vector tiles
(:mod:`tiles.cache`: memory LRU + optional Redis), under keys from
:func:`scene_tile_key` — the layers with their data versions and the tile's bounds —
so an edit to a layer moves exactly the keys of that layer's tiles. The quadtree
index is rebuilt when a version it was built from moves.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scenes.dem import dem_path, read_dem
from scenes.frame import LocalFrame
from scenes.glb import write_glb
from scenes.layers import FEATURE_LAYERS, LayerRows, SceneOptions
from scenes.scene import Scene, build_layers, build_scene, parse_scene_layers
from scenes.source import read_rows
from scenes.tileset import (
    FeatureIndex,
    Tile,
    build_index,
    build_tree,
    content_bbox,
    find_tile,
    square_root_bounds,
    tileset_json,
)
from tiles.cache import LayerVersions, TileCache
from twin.errors import NotFound
from twin.settings import TwinSettings
from twin.store import SpatialStore

#: Bump when the content encoding changes, so cached GLBs of the old form are not served.
CONTENT_VERSION = "s1"
DEFAULT_TILESET_LAYERS = ("buildings", "pipelines", "pipe_nodes")


def scene_tile_key(layers: Sequence[str], versions: Mapping[str, int],
                   bounds: tuple[float, ...], salt: str = CONTENT_VERSION) -> str:
    """The cache key / ETag of one piece of 3D content: its layers' data versions and its bounds.

    The one place that decides when cached 3D content is stale; a finer change log
    (per extent) can narrow it here without touching the callers.
    """
    parts = ",".join(f"{n}.{versions.get(n, 0)}" for n in layers)
    raw = f"{salt}|{parts}|{','.join(f'{b:.7f}' for b in bounds)}"
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


@dataclass
class TilesetState:
    """One built tileset: the index, the quadtree and the frame, for a set of layer versions."""

    layers: tuple[str, ...]
    versions: dict[str, int]
    key: str
    index: FeatureIndex
    root: Tile
    frame: LocalFrame

    @property
    def tiles(self) -> list[Tile]:
        return list(self.root.walk())


class SceneService:
    """Scenes and tilesets of one store; ``raster_dir`` holds ``dem.tif`` (and ``ortho.tif``)."""

    def __init__(self, store: SpatialStore, settings: TwinSettings, *, cache: TileCache | None = None,
                 raster_dir: Path | None = None):
        self.store = store
        self.settings = settings
        self.opts = SceneOptions.from_settings(settings)
        self.raster_dir = raster_dir if raster_dir is not None else settings.raster_dir
        self.cache = cache if cache is not None else TileCache(
            settings.scene_cache_mb * 2**20, settings.redis_url, redis_prefix="twin:scene:")
        self.versions = LayerVersions(store, ttl=settings.tile_version_ttl_s)
        self._states: dict[tuple[str, ...], TilesetState] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.versions.close()
        self.cache.close()

    # --- scenes -----------------------------------------------------------------
    def scene(self, bbox: tuple[float, float, float, float], layers: str | Sequence[str] | None,
              texture: str | None = None) -> Scene:
        names = parse_scene_layers(layers)
        return build_scene(self.store, bbox, names, raster_dir=self.raster_dir, opts=self.opts,
                           max_area_km2=self.settings.scene_max_area_km2, texture=texture)

    # --- tilesets ---------------------------------------------------------------
    def tileset_layers(self, raw: str | Sequence[str] | None) -> tuple[str, ...]:
        if raw is None:
            return DEFAULT_TILESET_LAYERS
        return parse_scene_layers(raw, FEATURE_LAYERS)

    def state(self, layers: tuple[str, ...]) -> TilesetState:
        """The tileset for the layers' current versions (built once per version change)."""
        versions = self.versions.get()
        mine = {n: versions.get(n, 0) for n in layers}
        current = self._states.get(layers)
        if current is not None and current.versions == mine:
            return current
        with self._lock:
            current = self._states.get(layers)
            if current is not None and current.versions == mine:
                return current
            state = self._build_state(layers, mine)
            self._states[layers] = state
            return state

    def _read_all(self, layer: str) -> LayerRows:
        return read_rows(self.store, layer)

    def _build_state(self, layers: tuple[str, ...], versions: dict[str, int]) -> TilesetState:
        rows = {n: self._read_all(n) for n in layers}
        boxes = [r.geoms for r in rows.values() if len(r)]
        if boxes:
            import shapely

            b = shapely.total_bounds(np.concatenate(boxes))
            extent = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
        else:
            extent = (0.0, 0.0, 1e-6, 1e-6)
        dem = read_dem(dem_path(self.raster_dir), extent)
        index = build_index(rows, dem, self.opts)
        root = build_tree(index, square_root_bounds(extent), self.settings.scene_tile_feature_cap)
        frame = LocalFrame((extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2, 0.0)
        key = scene_tile_key(layers, versions, extent)
        return TilesetState(layers, versions, key, index, root, frame)

    def tileset(self, layers: tuple[str, ...], content_uri: str) -> dict[str, Any]:
        """The tileset document; ``content_uri`` has ``{z}/{x}/{y}`` (and may use ``{v}``, the state key)."""
        st = self.state(layers)
        counts = {n: int((st.index.layer == n).sum()) for n in layers}
        extras = {"twin": {"layers": list(layers), "features": counts, "frame": st.frame.describe(),
                           "version": st.key, "tile_feature_cap": self.settings.scene_tile_feature_cap,
                           "picking": "EXT_mesh_features + EXT_structural_metadata: (layer, id) → "
                                      "/collections/{layer}/items/{id}"}}
        uri = content_uri.replace("{v}", st.key)
        return tileset_json(st.root, st.index, st.frame, uri, layers, extras)

    def tile_etag(self, st: TilesetState, tile: Tile) -> str:
        return scene_tile_key(st.layers, st.versions, (tile.z, tile.x, tile.y, *tile.bounds))

    def content(self, layers: tuple[str, ...], z: int, x: int, y: int) -> tuple[bytes, str]:
        """(GLB, ETag) of tile z/x/y; NotFound if the quadtree has no content there."""
        st = self.state(layers)
        tile = find_tile(st.root, z, x, y)
        if tile is None or len(tile.content) == 0:
            raise NotFound(f"no 3D tile {z}/{x}/{y} in this tileset", detail={"layers": list(layers)})
        key = self.tile_etag(st, tile)
        cached = self.cache.get(key)
        if cached is not None:
            return cached, key
        glb = self.render(st, tile)
        self.cache.set(key, glb)
        return glb, key

    def render(self, st: TilesetState, tile: Tile) -> bytes:
        """The content GLB of one tile, bypassing the cache."""
        idx = st.index
        bbox = content_bbox(tile, idx)
        rows: dict[str, LayerRows] = {}
        for layer in st.layers:
            want = idx.ids[tile.content[idx.layer[tile.content] == layer]]
            if len(want) == 0:
                continue
            rows[layer] = read_rows(self.store, layer, ids=want)
        dem = read_dem(dem_path(self.raster_dir), bbox)
        meshes, tables, info = build_layers(st.frame, rows, dem, self.opts)
        return write_glb(meshes, tables, {"twin": {"tile": tile.address, "content": info}})

    def export(self, layers: tuple[str, ...], directory: Path,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Write ``tileset.json`` and every content GLB under ``directory`` (static hosting)."""
        st = self.state(layers)
        directory.mkdir(parents=True, exist_ok=True)
        tiles = [t for t in st.tiles if len(t.content)]
        written = 0
        for i, t in enumerate(tiles):
            path = directory / "tiles" / str(t.z) / str(t.x) / f"{t.y}.glb"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = self.render(st, t)
            path.write_bytes(data)
            written += len(data)
            if progress:
                progress(i + 1, len(tiles))
        doc = self.tileset(layers, "tiles/{z}/{x}/{y}.glb")
        import json

        (directory / "tileset.json").write_text(json.dumps(doc, separators=(",", ":")))
        return {"tiles": len(tiles), "bytes": written, "features": len(st.index)}
