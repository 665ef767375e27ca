"""Pre-render vector tiles into the tile cache (Redis, when configured, is what outlives the run).

``seed_tiles(store, ["buildings", "roads"], range(12, 17))`` renders the composite
tile ``buildings,roads`` for every tile over the layers' data extent (or ``bbox``)
at those zooms, exactly as ``/tiles/buildings,roads/{z}/{x}/{y}.mvt`` would, and
stores its gzip bytes under the same key the server looks up. Keys carry the data
versions, so a seeded tile stays valid until its layers are edited.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from tiles.cache import TileCache
from tiles.service import TileService
from tiles.tilejson import union_extent
from tiles.tms import MAX_ZOOM, Tile, tiles_for_bbox
from twin.blocks import BLOCK_ZOOMS, ensure_blocks
from twin.catalog import LayerSpec
from twin.dialect import BBox
from twin.errors import InvalidParameter


@dataclass
class SeedResult:
    layers: list[str]
    zooms: list[int]
    bbox: BBox | None
    tiles: int = 0
    non_empty: int = 0
    bytes: int = 0
    seconds: float = 0.0
    per_zoom: dict[int, int] = field(default_factory=dict)


def check_zooms(zooms: Iterable[int]) -> list[int]:
    out = sorted(set(int(z) for z in zooms))
    if not out or out[0] < 0 or out[-1] > MAX_ZOOM:
        raise InvalidParameter(f"zooms must lie in 0..{MAX_ZOOM}", detail={"zooms": out})
    return out


def tiles_to_render(
    service: TileService, specs: Sequence[LayerSpec], zooms: Sequence[int], bbox: BBox | None
) -> tuple[BBox | None, Iterator[Tile]]:
    """The lon/lat area (``bbox`` or the layers' data extent) and the tiles covering it, zoom by zoom.

    Zooms where none of the layers shows are skipped.
    """
    area = bbox or union_extent(service.extents(specs, service.versions.get()))

    def gen() -> Iterator[Tile]:
        if area is None:
            return
        for z in zooms:
            if not any(s.min_zoom <= z <= s.max_zoom for s in specs):
                continue
            yield from tiles_for_bbox(area, z)

    return area, gen()


def seed_tiles(
    store,  # noqa: ANN001 - a SpatialStore
    layers: Sequence[str],
    zooms: Iterable[int],
    bbox: BBox | None = None,
    cache: TileCache | None = None,
    *,
    workers: int = 4,
    settings=None,  # noqa: ANN001 - TwinSettings; default: the process settings
) -> SeedResult:
    """Render the composite tile of ``layers`` at ``zooms`` over ``bbox`` into ``cache``.

    ``cache`` defaults to the configured one (``TWIN_REDIS_URL`` + memory); without
    Redis the seeded tiles live only in this process's memory.
    """
    if cache is None:
        from twin.settings import get_settings

        s = settings or get_settings()
        cache = TileCache(int(s.tile_cache_mb) * 2**20, s.redis_url,
                          redis_prefix=s.tile_redis_prefix)
    zooms = list(zooms)
    if "buildings" in layers and set(BLOCK_ZOOMS) & set(zooms):  # blocks: no server may be keeping them
        ensure_blocks(store)
    service = TileService(store, cache=cache)
    try:
        specs = service.layer_specs(list(layers))
        zl = check_zooms(zooms)
        area, tiles = tiles_to_render(service, specs, zl, bbox)
        result = SeedResult(layers=[s.id for s in specs], zooms=zl, bbox=area)
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
            for tile, res in zip_tiles(pool, service, specs, tiles):
                result.tiles += 1
                result.per_zoom[tile.z] = result.per_zoom.get(tile.z, 0) + 1
                if res.body:
                    result.non_empty += 1
                    result.bytes += len(res.body)
        result.seconds = round(time.perf_counter() - started, 3)
        return result
    finally:
        service.close()


def zip_tiles(pool, service: TileService, specs, tiles: Iterable[Tile], window: int = 256):  # noqa: ANN001, ANN201
    """(tile, TileResult) pairs rendered on ``pool``, at most ``window`` in flight."""
    pending: list[tuple[Tile, concurrent.futures.Future]] = []
    for tile in tiles:
        pending.append((tile, pool.submit(service.tile, specs, tile, "gzip")))
        if len(pending) >= window:
            t, f = pending.pop(0)
            yield t, f.result()
    for t, f in pending:
        yield t, f.result()


__all__ = ["SeedResult", "check_zooms", "seed_tiles", "tiles_to_render"]
